/** A colour as its red, green and blue bytes. */
export type Rgb = [number, number, number];

/** `from` moved `amount` (0–1) of the way to `to`. */
export function mix(from: number, to: number, amount: number): number {
  return from + (to - from) * amount;
}

/** An HSL colour (hue in degrees, saturation and lightness 0–1) as RGB bytes. */
export function hslToRgb(hueDegrees: number, saturation: number, lightness: number): Rgb {
  const chroma = (1 - Math.abs(2 * lightness - 1)) * saturation;
  const sector = hueDegrees / 60;
  const second = chroma * (1 - Math.abs((sector % 2) - 1));
  const [r, g, b] =
    sector < 1
      ? [chroma, second, 0]
      : sector < 2
        ? [second, chroma, 0]
        : sector < 3
          ? [0, chroma, second]
          : sector < 4
            ? [0, second, chroma]
            : sector < 5
              ? [second, 0, chroma]
              : [chroma, 0, second];
  const base = lightness - chroma / 2;
  return [Math.round((r + base) * 255), Math.round((g + base) * 255), Math.round((b + base) * 255)];
}

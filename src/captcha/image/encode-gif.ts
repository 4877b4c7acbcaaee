import { GifWriter } from "omggif";
import { type IndexedImage, rasterizeSvgCaptcha } from "./rasterize-svg-captcha.js";

const SVG_DATA_URI_PREFIX = "data:image/svg+xml;base64,";
const SIZE_PATTERN = /^<svg[^>]*\swidth="(\d+)"[^>]*\sheight="(\d+)"/;

/**
 * The image challenge's SVG (`createImageChallenge`) as a one-frame GIF data URI,
 * `data:image/gif;base64,...`: what Tencent CloudBase documents for its image captcha, and what its
 * native clients decode (Android's BitmapFactory and iOS's UIImage decode no SVG).
 *
 * A face converts only where its API asks for it: drawing a GIF costs ~1 ms (rasterizing ~0.5,
 * encoding ~0.3, against ~0.25 for the SVG alone), and captcha fetches are unauthenticated.
 *
 * @throws Error when the input is not svg-captcha's SVG as `createImageChallenge` makes it.
 */
export function svgCaptchaToGifDataUri(svgDataUri: string): string {
  if (!svgDataUri.startsWith(SVG_DATA_URI_PREFIX)) throw new Error("not an SVG data URI");
  const svg = Buffer.from(svgDataUri.slice(SVG_DATA_URI_PREFIX.length), "base64").toString("utf8");
  const size = SIZE_PATTERN.exec(svg);
  if (!size) throw new Error("the SVG states no width and height");
  const image = rasterizeSvgCaptcha(svg, Number(size[1]), Number(size[2]));
  return `data:image/gif;base64,${encodeGif(image).toString("base64")}`;
}

function encodeGif(image: IndexedImage): Buffer {
  // omggif writes into a buffer it does not grow. LZW codes are at most 12 bits, so 2 bytes per pixel
  // cover the image data with its sub-block length bytes; 1 KiB covers header, 768-byte palette and trailer.
  const output = Buffer.alloc(1024 + 2 * image.pixels.length);
  const writer = new GifWriter(output, image.width, image.height, { palette: image.palette });
  writer.addFrame(0, 0, image.width, image.height, image.pixels);
  return output.subarray(0, writer.end());
}

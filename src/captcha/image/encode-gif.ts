import { GifWriter } from "omggif";
import type { IndexedImage } from "./rasterize-svg-captcha.js";

/**
 * A palette-indexed picture as a one-frame GIF: the format Tencent CloudBase documents for its image
 * captcha (`data:image/gif;base64,...`), and one that browsers and native clients alike decode
 * (Android's BitmapFactory and iOS's UIImage decode no SVG).
 */
export function encodeGif(image: IndexedImage): Buffer {
  // omggif writes into a buffer it does not grow. LZW codes are at most 12 bits, so 2 bytes per pixel
  // cover the image data with its sub-block length bytes; 1 KiB covers header, 768-byte palette and trailer.
  const output = Buffer.alloc(1024 + 2 * image.pixels.length);
  const writer = new GifWriter(output, image.width, image.height, { palette: image.palette });
  writer.addFrame(0, 0, image.width, image.height, image.pixels);
  return output.subarray(0, writer.end());
}

/**
 * A user's image (and mask) as the input of a model: decoded at the model's channels and size. Shared by
 * `ddpm inpaint` / `ddpm edit` (files) and `ddpm serve` (uploaded bytes), so both read a picture the same way.
 */
import { decodeImage, makeGrid, readImage, type ImageHeader, type ImageU8 } from './image.ts';

/** The decode size that brings a `width` x `height` image to the model's square `size` (undefined when it is already). */
export function modelDecodeSize(h: Pick<ImageHeader, 'width' | 'height'>, size: number): number | undefined {
  return h.width === size && h.height === size ? undefined : size;
}

/**
 * The image at the model's channels and size, (C, S, S) in [−1, 1]. A colour image for a 1-channel model becomes
 * its Rec. 601 luma; any other size is resized (shorter side to S) and centre-cropped.
 */
export async function decodeModelImage(input: string | Uint8Array, header: ImageHeader, channels: 1 | 3, size: number): Promise<Float32Array> {
  return (await readImage(input, { channels, size: modelDecodeSize(header, size) })).data;
}

/**
 * A mask at the model's size, one channel, 1 = generate: white (luma >= 128 of 255, after the same resize and crop
 * as the image) generates, anything darker keeps. Transparent pixels count as black (keep).
 */
export async function decodeMask(input: string | Uint8Array, header: ImageHeader, size: number): Promise<Float32Array> {
  const gray = await decodeImage(input, { channels: 1, size: modelDecodeSize(header, size) });
  return Float32Array.from(gray.data, (v) => (v >= 128 ? 1 : 0));
}

/**
 * What an editing command's --out holds: one result as the image itself (no border, so its pixels compare with the
 * input's), several as a grid of ceil(sqrt(n)) columns with 2-pixel borders, as `ddpm sample` writes them.
 */
export function resultImage(images: Float32Array, shape: readonly [number, number, number, number]): ImageU8 {
  const n = shape[0];
  return makeGrid(images, shape, n === 1 ? { nrow: 1, padding: 0 } : { nrow: Math.ceil(Math.sqrt(n)) });
}

/**
 * Small hostile files for the resource-limit tests: each is a few bytes that declare something huge.
 */
import sharp from 'sharp';

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** CRC-32 (ISO-HDLC, as PNG chunks use). */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * A valid 1x1 RGB PNG whose IHDR is patched to declare `width` x `height` (CRC recomputed), so a decoder
 * believes the header and finds the pixel data short: a decompression bomb of ~70 bytes.
 */
export async function pngDeclaring(width: number, height: number): Promise<Uint8Array> {
  const png = new Uint8Array(await sharp({ create: { width: 1, height: 1, channels: 3, background: '#808080' } }).png().toBuffer());
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  // signature (8) | IHDR length (4) | 'IHDR' (4) | width (4) | height (4) | depth, colour, ... (5) | CRC (4)
  if (new TextDecoder().decode(png.subarray(12, 16)) !== 'IHDR') throw new Error('IHDR is not the first chunk');
  view.setUint32(16, width);
  view.setUint32(20, height);
  view.setUint32(29, crc32(png.subarray(12, 29)));
  return png;
}

/** An IDX header (type uint8) with the given dims, followed by `dataBytes` zero bytes. */
export function idxFile(dims: number[], dataBytes = 0): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + dataBytes);
  const view = new DataView(out.buffer);
  out[2] = 0x08;
  out[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d));
  return out;
}

/** Safetensors bytes: an 8-byte header length `declaredLength` (may lie), then `header` as JSON. */
export function safetensorsDeclaring(header: unknown, declaredLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length);
  new DataView(out.buffer).setBigUint64(0, declaredLength ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

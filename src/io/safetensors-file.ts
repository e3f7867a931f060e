// Node file helpers around the pure safetensors codec in ./safetensors.ts.

import { promises as fsp } from 'node:fs';
import { writeFileAtomic, type AtomicWriteOptions } from './atomic.ts';
import {
  MAX_HEADER_BYTES,
  parseSafetensors,
  parseSafetensorsHeader,
  SafetensorsError,
  serializeSafetensors,
  type ParsedSafetensors,
  type SafetensorsHeader,
  type TensorInput,
} from './safetensors.ts';

/** Serialise and write atomically (temp file + fsync + rename): a crash never leaves a truncated file behind. */
export async function writeSafetensorsFile(
  file: string,
  tensors: Record<string, TensorInput>,
  metadata?: Record<string, string>,
  opts?: AtomicWriteOptions,
): Promise<void> {
  await writeFileAtomic(file, serializeSafetensors(tensors, metadata), opts);
}

function named(file: string, err: unknown): unknown {
  if (err instanceof SafetensorsError) return new SafetensorsError(`${file}: ${err.message.replace(/^safetensors: /, '')}`);
  return err;
}

/**
 * Read and validate only the header of a safetensors file (names, dtypes, shapes, offsets, checked against the
 * file's length), without reading the tensor data: a caller can compare the declared tensors with what it
 * expects before reading (and allocating) anything else. Errors name the file.
 */
export async function readSafetensorsHeaderFile(file: string): Promise<SafetensorsHeader> {
  const fh = await fsp.open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    const lenBytes = new Uint8Array(8);
    await fh.read(lenBytes, 0, Math.min(8, size), 0);
    const view = new DataView(lenBytes.buffer);
    const n = view.getUint32(4, true) * 2 ** 32 + view.getUint32(0, true);
    // read the header (at most MAX_HEADER_BYTES: a larger declared length fails in the parser below)
    const headerLen = size < 8 ? 0 : Math.min(n, MAX_HEADER_BYTES + 1, size - 8);
    const head = new Uint8Array(8 + headerLen);
    head.set(lenBytes);
    if (headerLen > 0) await fh.read(head, 8, headerLen, 8);
    try {
      return parseSafetensorsHeader(head, size);
    } catch (err) {
      throw named(file, err);
    }
  } finally {
    await fh.close();
  }
}

/** Read and validate a whole safetensors file; errors name the file. */
export async function readSafetensorsFile(file: string): Promise<ParsedSafetensors> {
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(file);
  } catch (err) {
    // Node reads at most 2 GiB whole (over MAX_PARAMS float32 weights): say which file, not just the size
    if ((err as { code?: string }).code === 'ERR_FS_FILE_TOO_LARGE') throw new SafetensorsError(`${file}: ${(err as Error).message}`);
    throw err;
  }
  try {
    return parseSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (err) {
    throw named(file, err);
  }
}

// Node file helpers around the pure safetensors codec in ./safetensors.ts.

import { promises as fsp } from 'node:fs';
import { writeFileAtomic, type AtomicWriteOptions } from './atomic.ts';
import {
  parseSafetensors,
  SafetensorsError,
  serializeSafetensors,
  type ParsedSafetensors,
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

/** Read and validate a whole safetensors file; errors name the file. */
export async function readSafetensorsFile(file: string): Promise<ParsedSafetensors> {
  const bytes = await fsp.readFile(file);
  try {
    return parseSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (err) {
    if (err instanceof SafetensorsError) throw new SafetensorsError(`${file}: ${err.message.replace(/^safetensors: /, '')}`);
    throw err;
  }
}

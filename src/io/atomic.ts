// Crash-safe writes. A reader never sees a half-written file or checkpoint directory: the new content is made
// durable under a temporary name in the same directory (same filesystem), then renamed into place, since rename(2)
// replaces a path atomically.

import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

export interface AtomicWriteOptions {
  /** fsync files and directories (default true); off only for throwaway output such as tests and previews. */
  fsync?: boolean;
  /**
   * Called once the new content is complete and durable under its temporary name, just before it replaces the
   * target. Throwing here aborts the write exactly as a failure would (tests use it to simulate a crash).
   */
  beforeCommit?: (tmpPath: string) => void | Promise<void>;
}

let tmpCounter = 0;

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (err) {
    if (errCode(err) === 'ENOENT') return false;
    throw err;
  }
}

/** fsync a directory so that renames and creations inside it are durable. Not possible on Windows: skipped. */
async function fsyncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, 'r');
    await fh.sync();
  } catch (err) {
    const code = errCode(err);
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF') throw err;
  } finally {
    await fh?.close();
  }
}

async function writeDurable(file: string, data: Uint8Array | string, fsync: boolean): Promise<void> {
  const fh = await fsp.open(file, 'wx'); // 'x': never clobber someone else's temp file
  try {
    await fh.writeFile(data);
    if (fsync) await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Write `data` to `file` atomically: temp file in the same directory, fsync, rename over `file`, fsync the
 * directory. On any failure the temp file is removed and `file` keeps its old content (or stays absent).
 */
export async function writeFileAtomic(
  file: string,
  data: Uint8Array | string,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  const fsync = opts.fsync ?? true;
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${tmpCounter++}.tmp`);
  try {
    await writeDurable(tmp, data, fsync);
    await opts.beforeCommit?.(tmp);
    await fsp.rename(tmp, target);
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
  if (fsync) await fsyncDir(dir);
}

// ---------------------------------------------------------------------------------------------------------------
// Checkpoint directories.
//
// A checkpoint is a directory of files (weights, optimiser state, config, loader state) that must change together.
// POSIX has no atomic swap of two directories, so a write goes through two sibling names:
//   1. write every file into `<dir>.new`, fsync each and the directory;
//   2. rename `<dir>` -> `<dir>.old` (when there is a previous checkpoint);
//   3. rename `<dir>.new` -> `<dir>`;
//   4. remove `<dir>.old`.
// `.old` only ever exists after `.new` is complete, which makes every interrupted state recoverable:
//   <dir> present                    -> it is valid; leftover .new (maybe partial) and .old are stale: remove.
//   <dir> absent, .old present       -> crash between 2 and 3: .new is complete, promote it (else restore .old).
//   <dir> absent, .old absent        -> no checkpoint yet; a leftover .new may be partial: remove.
// One writer per checkpoint directory at a time.

export type CheckpointFiles = Record<string, Uint8Array | string>;

export type RecoverResult = 'ok' | 'recovered' | 'missing';

/**
 * Bring `dir` back to a consistent state after an interrupted writeCheckpointDir. Returns 'ok' when `dir` was
 * already valid (stale siblings are removed), 'recovered' when it had to be restored from `.new`/`.old`, 'missing'
 * when there is no checkpoint. Call before reading a checkpoint that a crashed run may have been writing.
 */
export async function recoverCheckpointDir(dir: string): Promise<RecoverResult> {
  const target = path.resolve(dir);
  const fresh = `${target}.new`;
  const old = `${target}.old`;
  if (await exists(target)) {
    await fsp.rm(fresh, { recursive: true, force: true });
    await fsp.rm(old, { recursive: true, force: true });
    return 'ok';
  }
  if (await exists(old)) {
    await fsp.rename((await exists(fresh)) ? fresh : old, target);
    await fsyncDir(path.dirname(target));
    await fsp.rm(old, { recursive: true, force: true });
    return 'recovered';
  }
  await fsp.rm(fresh, { recursive: true, force: true });
  return 'missing';
}

function checkFileName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\\') || name.includes('\0')) {
    throw new Error(`checkpoint file name must be a plain file name, got ${JSON.stringify(name)}`);
  }
}

/**
 * Replace the checkpoint directory `dir` with exactly `files` (name -> content), so that at every instant a complete
 * checkpoint exists: the previous one until the new one is complete and durable (see the scheme above). On failure
 * the partial new directory is removed and the previous checkpoint is left as it was.
 */
export async function writeCheckpointDir(
  dir: string,
  files: CheckpointFiles,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  const fsync = opts.fsync ?? true;
  const target = path.resolve(dir);
  const parent = path.dirname(target);
  const fresh = `${target}.new`;
  const old = `${target}.old`;
  const names = Object.keys(files);
  names.forEach(checkFileName);

  // 0. Settle whatever a crashed writer left behind, so `.new` and `.old` are free.
  await fsp.mkdir(parent, { recursive: true });
  await recoverCheckpointDir(target);

  // 1. The complete new checkpoint under `.new`.
  try {
    await fsp.mkdir(fresh);
    for (const name of names.sort()) await writeDurable(path.join(fresh, name), files[name], fsync);
    if (fsync) await fsyncDir(fresh);
    await opts.beforeCommit?.(fresh);
  } catch (err) {
    await fsp.rm(fresh, { recursive: true, force: true });
    throw err;
  }

  // 2-4. Swap. From here on an interruption is repaired by recoverCheckpointDir.
  const hadPrevious = await exists(target);
  if (hadPrevious) {
    await fsp.rename(target, old);
    if (fsync) await fsyncDir(parent);
  }
  await fsp.rename(fresh, target);
  if (fsync) await fsyncDir(parent);
  if (hadPrevious) await fsp.rm(old, { recursive: true, force: true });
}

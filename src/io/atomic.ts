// Crash-safe writes. A reader never sees a half-written file or checkpoint directory: the new content is made
// durable under a temporary name in the same directory (same filesystem), then renamed into place, since rename(2)
// replaces a path atomically.

import { promises as fsp, writeSync } from 'node:fs';
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

// Test-only fault injection for the checkpoint protocol (test/checkpoint-kill.test.ts, scripts/soak-kill.ts).
// With DDPM_TEST_CKPT_FAULT set, every file-system operation that writeCheckpointDir / recoverCheckpointDir is about
// to make is numbered (1, 2, ... over the life of the process) and traced to stderr as `ckpt-op <n> <op> <path>`;
// when the value is a number k > 0, the process SIGKILLs itself just before operation k. A real kill, not a throw:
// a throw runs the cleanup code that a crash never runs. Unset (always, outside tests) it costs one comparison.
const FAULT_ENV = process.env.DDPM_TEST_CKPT_FAULT;
const FAULT_KILL_AT = FAULT_ENV === undefined ? 0 : Number.parseInt(FAULT_ENV, 10) || 0;
let faultOps = 0;

function faultPoint(op: string, p: string): void {
  if (FAULT_ENV === undefined) return;
  faultOps++;
  writeSync(2, `ckpt-op ${faultOps} ${op} ${p}\n`);
  if (faultOps === FAULT_KILL_AT) process.kill(process.pid, 'SIGKILL');
}

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

async function writeDurable(file: string, data: Uint8Array | string, fsync: boolean, traced = false): Promise<void> {
  if (traced) faultPoint('write', file);
  const fh = await fsp.open(file, 'wx'); // 'x': never clobber someone else's temp file
  try {
    await fh.writeFile(data);
    if (traced && fsync) faultPoint('fsync', file);
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
//   2. rename `<dir>` -> `<dir>.old` (when there is a previous checkpoint), fsync the parent;
//   3. rename `<dir>.new` -> `<dir>`, fsync the parent;
//   4. remove `<dir>.old`.
// `.old` only ever exists after `.new` is complete, which makes every interrupted state recoverable:
//   <dir> present                    -> it is valid; leftover .new (maybe partial) and .old are stale: remove.
//   <dir> absent, .old present       -> crash between 2 and 3: .new is complete, promote it (else restore .old).
//   <dir> absent, .old absent        -> no checkpoint yet; a leftover .new may be partial: remove.
// One writer per checkpoint directory at a time: the trainer holds its run directory's lock (src/io/run-lock.ts).
// The writer (and `ddpm train --resume`, before it decides whether there is a checkpoint) repairs with
// recoverCheckpointDir; readers that may run next to a live writer (sample, eval, export, --init-from) take no lock,
// only resolve which directory to read (resolveCheckpointDir) and never rename.

export type CheckpointFiles = Record<string, Uint8Array | string>;

export type RecoverResult = 'ok' | 'recovered' | 'missing';

function siblings(dir: string): { target: string; fresh: string; old: string } {
  const target = path.resolve(dir);
  return { target, fresh: `${target}.new`, old: `${target}.old` };
}

async function removeTree(p: string, op: string): Promise<void> {
  if (!(await exists(p))) return;
  faultPoint(op, p);
  await fsp.rm(p, { recursive: true, force: true });
}

async function renameTraced(from: string, to: string, op: string): Promise<void> {
  faultPoint(op, `${from} -> ${to}`);
  await fsp.rename(from, to);
}

async function fsyncDirTraced(dir: string, op: string): Promise<void> {
  faultPoint(op, dir);
  await fsyncDir(dir);
}

/**
 * Bring `dir` back to a consistent state after an interrupted writeCheckpointDir. Returns 'ok' when `dir` was
 * already valid (stale siblings are removed), 'recovered' when it had to be restored from `.new`/`.old`, 'missing'
 * when there is no checkpoint. Writer side: call it before deciding whether there is a checkpoint to resume, and
 * never while another process may be writing `dir` (readers use resolveCheckpointDir).
 */
export async function recoverCheckpointDir(dir: string): Promise<RecoverResult> {
  const { target, fresh, old } = siblings(dir);
  if (await exists(target)) {
    await removeTree(fresh, 'recover-rm-new');
    await removeTree(old, 'recover-rm-old');
    return 'ok';
  }
  if (await exists(old)) {
    await renameTraced((await exists(fresh)) ? fresh : old, target, 'recover-rename');
    await fsyncDirTraced(path.dirname(target), 'recover-fsync-parent');
    await removeTree(old, 'recover-rm-old');
    return 'recovered';
  }
  await removeTree(fresh, 'recover-rm-new');
  return 'missing';
}

/**
 * Which directory holds the newest complete checkpoint of `dir`, without changing anything (safe next to a live
 * writer): `dir` itself; else, while `.old` exists (the writer is, or died, between steps 2 and 3), `.new`, which
 * is complete by then, or `.old` if `.new` is gone; else null (no checkpoint, or only a partial first `.new`).
 * A writer may rename the directory while a reader reads it: see readCheckpointDirStable.
 */
export async function resolveCheckpointDir(dir: string): Promise<string | null> {
  const { target, fresh, old } = siblings(dir);
  if (await exists(target)) return dir;
  if (await exists(old)) {
    if (await exists(fresh)) return fresh;
    if (await exists(old)) return old;
  }
  // the writer may have finished its swap while we looked
  return (await exists(target)) ? dir : null;
}

/** Identity of a directory: a writer's swap replaces it by another inode (and rename changes its ctime). */
async function dirIdentity(dir: string): Promise<string | null> {
  try {
    const st = await fsp.stat(dir, { bigint: true });
    return `${st.dev}:${st.ino}:${st.ctimeNs}`;
  } catch (err) {
    if (errCode(err) === 'ENOENT' || errCode(err) === 'ENOTDIR') return null;
    throw err;
  }
}

/**
 * Read a checkpoint with `read(resolvedDir)` from a consistent version of it, next to a writer that may swap it
 * meanwhile: resolve (resolveCheckpointDir), read, and start again if the resolved directory was moved or replaced
 * during the read (a few times; a writer swaps once per checkpoint). Null when there is no checkpoint.
 */
export async function readCheckpointDirStable<T>(dir: string, read: (resolved: string) => Promise<T>): Promise<{ dir: string; value: T } | null> {
  const attempts = 4;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const resolved = await resolveCheckpointDir(dir);
    if (resolved === null) return null;
    const before = await dirIdentity(resolved);
    if (before === null) continue; // swapped between the two looks
    let value: T;
    try {
      value = await read(resolved);
    } catch (err) {
      if ((await dirIdentity(resolved)) !== before) continue;
      throw err;
    }
    if ((await dirIdentity(resolved)) === before) return { dir: resolved, value };
  }
  throw new Error(`${dir}: the checkpoint was replaced ${attempts} times while being read; try again`);
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
  const { target, fresh, old } = siblings(dir);
  const parent = path.dirname(target);
  const names = Object.keys(files);
  names.forEach(checkFileName);

  // 0. Settle whatever a crashed writer left behind, so `.new` and `.old` are free.
  await fsp.mkdir(parent, { recursive: true });
  await recoverCheckpointDir(target);

  // 1. The complete new checkpoint under `.new`.
  try {
    faultPoint('mkdir-new', fresh);
    await fsp.mkdir(fresh);
    for (const name of names.sort()) await writeDurable(path.join(fresh, name), files[name], fsync, true);
    if (fsync) await fsyncDirTraced(fresh, 'fsync-new');
    await opts.beforeCommit?.(fresh);
  } catch (err) {
    await fsp.rm(fresh, { recursive: true, force: true });
    throw err;
  }

  // 2-4. Swap. From here on an interruption is repaired by recoverCheckpointDir.
  const hadPrevious = await exists(target);
  if (hadPrevious) {
    await renameTraced(target, old, 'rename-to-old');
    if (fsync) await fsyncDirTraced(parent, 'fsync-parent');
  }
  await renameTraced(fresh, target, 'rename-new');
  if (fsync) await fsyncDirTraced(parent, 'fsync-parent');
  if (hadPrevious) await removeTree(old, 'rm-old');
  faultPoint('done', target);
}

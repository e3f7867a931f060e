/**
 * Output paths of the CLI, one convention for every command:
 * - checked before any work (`checkOutputFile`, `checkOutputDir`): a sampling run or a training start-up never
 *   ends in "cannot write";
 * - written all or nothing (`writeOutputs`): every file is staged under a temporary name next to its target and
 *   none replaces its target until all are staged; directories this call created are removed again on failure;
 * - an OS error on a user's path is a UserError of one line naming the flag, the path and the problem in words
 *   (`outputError`), exit code 2.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../io/atomic.ts';
import { UserError } from './common.ts';

/** errno codes in words (as strerror(3) puts them), for the ones a path given on the command line can cause. */
const ERRNO_WORDS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a component of the path is not a directory',
  EISDIR: 'is a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EEXIST: 'already exists',
  ENAMETOOLONG: 'file name too long',
  ELOOP: 'too many levels of symbolic links',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  EFBIG: 'file too large',
  EIO: 'input/output error',
  EBUSY: 'device or resource busy',
  ETXTBSY: 'text file busy',
  EINVAL: 'invalid argument',
  EXDEV: 'cross-device link',
  ENOTEMPTY: 'directory not empty',
};

/** The errno code of a Node fs error ('ENOSPC', ...), if it is one. */
export function errnoCode(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

/** "no space left on device (ENOSPC)"; undefined for an error that is not an OS error. */
export function errnoWords(err: unknown): string | undefined {
  const code = errnoCode(err);
  if (code === undefined) return undefined;
  return `${ERRNO_WORDS[code] ?? 'system error'} (${code})`;
}

/** An OS error while writing `file` for `flag` as one line naming both; any other error is returned unchanged. */
export function outputError(flag: string, file: string, err: unknown): unknown {
  if (err instanceof UserError) return err;
  const words = errnoWords(err);
  if (words === undefined) return err;
  return new UserError(`${flag} ${file}: cannot write: ${words}`);
}

async function statOrNull(p: string): Promise<import('node:fs').Stats | null> {
  try {
    return await fsp.stat(p);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return null;
    throw e;
  }
}

/**
 * The closest existing ancestor of `dir` (or `dir` itself) and the missing directories below it, top down.
 * Throws a UserError when the closest existing one is not a directory.
 */
async function existingAncestor(flag: string, shown: string, dir: string): Promise<{ base: string; missing: string[] }> {
  const missing: string[] = [];
  let p = path.resolve(dir);
  for (;;) {
    let st;
    try {
      st = await statOrNull(p);
    } catch (e) {
      // ENOTDIR: some ancestor is a file; keep climbing to name it. Anything else (EACCES, ELOOP, ...) names p.
      if (errnoCode(e) !== 'ENOTDIR') throw new UserError(`${flag} ${shown}: cannot look up ${p}: ${errnoWords(e)}`);
      st = null;
    }
    if (st) {
      if (!st.isDirectory()) throw new UserError(`${flag} ${shown}: ${p} is not a directory`);
      return { base: p, missing: missing.reverse() };
    }
    const up = path.dirname(p);
    if (up === p) throw new UserError(`${flag} ${shown}: no existing directory above it`);
    missing.push(p);
    p = up;
  }
}

let probeCounter = 0;

/** Can this process create entries in the directory `dir`? Creates and removes an empty file (or directory) there. */
async function probeWritable(flag: string, shown: string, dir: string, kind: 'file' | 'dir'): Promise<void> {
  const probe = path.join(dir, `.ddpm-probe.${process.pid}.${probeCounter++}`);
  try {
    if (kind === 'dir') {
      await fsp.mkdir(probe);
      await fsp.rmdir(probe);
    } else {
      await (await fsp.open(probe, 'wx')).close();
      await fsp.rm(probe, { force: true });
    }
  } catch (e) {
    await fsp.rm(probe, { recursive: true, force: true }).catch(() => {});
    throw new UserError(`${flag} ${shown}: cannot create ${kind === 'dir' ? 'directories' : 'files'} in ${dir}: ${errnoWords(e) ?? (e as Error).message}`);
  }
}

/**
 * Before any work: `file` can be written as a new or replaced regular file. It is not a directory (nor a device or
 * FIFO, which an atomic rename would replace), and its directory exists and is writable, or can be created.
 * Creates nothing that stays.
 */
export async function checkOutputFile(flag: string, file: string): Promise<void> {
  const target = path.resolve(file);
  if (file.endsWith('/') || file.endsWith(path.sep)) throw new UserError(`${flag} ${file}: names a directory, expected a file`);
  const { base, missing } = await existingAncestor(flag, file, path.dirname(target));
  if (missing.length === 0) {
    let st;
    try {
      st = await statOrNull(target);
    } catch (e) {
      throw new UserError(`${flag} ${file}: ${errnoWords(e) ?? (e as Error).message}`);
    }
    if (st?.isDirectory()) throw new UserError(`${flag} ${file}: is a directory, expected a file`);
    if (st && !st.isFile()) throw new UserError(`${flag} ${file}: exists and is not a regular file`);
  }
  await probeWritable(flag, file, base, missing.length === 0 ? 'file' : 'dir');
}

/** Before any work: `dir` is an existing writable directory, or can be created. Creates nothing that stays. */
export async function checkOutputDir(flag: string, dir: string): Promise<void> {
  const { base, missing } = await existingAncestor(flag, dir, dir);
  await probeWritable(flag, dir, base, missing.length === 0 ? 'file' : 'dir');
}

/**
 * mkdir -p, one level at a time (Node 20's recursive mkdir loops forever on some paths, e.g. under /proc).
 * Returns the directories it created, top down, so that a caller can remove them again.
 */
export async function makeDirs(flag: string, dir: string): Promise<string[]> {
  const { missing } = await existingAncestor(flag, dir, dir);
  const created: string[] = [];
  for (const d of missing) {
    try {
      await fsp.mkdir(d);
      created.push(d);
    } catch (e) {
      if (errnoCode(e) === 'EEXIST' && (await statOrNull(d))?.isDirectory()) continue; // made by someone else meanwhile
      await removeDirs(created);
      throw new UserError(`${flag} ${dir}: cannot create directory ${d}: ${errnoWords(e) ?? (e as Error).message}`);
    }
  }
  return created;
}

/** Remove directories made by makeDirs, deepest first, as long as they are empty. */
export async function removeDirs(created: readonly string[]): Promise<void> {
  for (const d of [...created].reverse()) await fsp.rmdir(d).catch(() => {});
}

export interface Output {
  /** the flag that named the file, for messages: '--out' */
  flag: string;
  file: string;
  data: Uint8Array | string;
  /** fsync the file and its directory (default false: images; true for model files) */
  fsync?: boolean;
  /** check the staged file (its temporary path) before anything is committed; throwing aborts every output */
  verify?: (tmpPath: string) => void | Promise<void>;
}

/**
 * Write `outputs` all or nothing. Each file is staged in turn by writeFileAtomic, which then waits in its
 * beforeCommit hook (file closed) until all are staged; only then do the renames run. A failure while staging or
 * verifying removes every staged file and every directory this call created, so no target changes. (The renames
 * themselves, after that, cannot run out of space; should one still fail, the outputs before it are replaced.)
 */
export async function writeOutputs(outputs: readonly Output[]): Promise<void> {
  let release!: () => void;
  let abort!: (e: unknown) => void;
  const gate = new Promise<void>((res, rej) => {
    release = res;
    abort = rej;
  });
  gate.catch(() => {}); // handled through each write's rejection
  const created: string[] = [];
  const writes: Promise<void>[] = [];
  try {
    for (const o of outputs) {
      created.push(...(await makeDirs(o.flag, path.dirname(path.resolve(o.file)))));
      let staged!: () => void;
      const ready = new Promise<void>((res) => (staged = res));
      const write = writeFileAtomic(o.file, o.data, {
        fsync: o.fsync ?? false,
        beforeCommit: async (tmp) => {
          await o.verify?.(tmp);
          staged();
          await gate;
        },
      }).catch((e: unknown) => {
        throw outputError(o.flag, o.file, e);
      });
      writes.push(write);
      await Promise.race([ready, write]);
    }
  } catch (e) {
    abort(e);
    await Promise.allSettled(writes);
    await removeDirs(created);
    throw e;
  }
  release();
  await Promise.all(writes);
}

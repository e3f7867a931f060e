/**
 * One writer per run directory (issue 34). A trainer holds `<run>/.lock` for as long as it may write into the run
 * directory (`ddpm train` from before it reads anything there; `Trainer.create` unless its caller holds the lock), so
 * a second trainer on the same directory is refused at once instead of interleaving checkpoints and log lines.
 * Readers take no lock: `ddpm sample`, `eval`, `export`, `--init-from` and DDPMPipeline read a complete checkpoint
 * while a trainer runs (checkpoint writes are atomic, src/io/atomic.ts). The page (web/) trains in the browser tab
 * and writes no run directory, so it has nothing to lock.
 *
 * The lock file, for every program that writes a run directory (the Python DDP trainer of issue 31 follows it):
 * - `<run>/.lock`, created with O_CREAT | O_EXCL (open(path, 'wx'); Python: open(path, 'x')): one creator wins;
 * - one JSON object and a newline, e.g.
 *     {"pid":1234,"hostname":"box","startedAt":"2026-12-03T12:01:00.000Z","command":"ddpm train",
 *      "argv":["train","--out","runs/r"],"token":"9f2c61d0a4b7e3c5","procStart":"4242"}
 *   `pid` (a positive integer), `hostname` (os.hostname(); Python socket.gethostname()) and `startedAt` (ISO 8601)
 *   are required; `command`, `argv`, `token` (random: no two locks have the same bytes) and `procStart` (Linux:
 *   field 22 of /proc/self/stat, the start time in clock ticks since boot, which tells a reused PID) are optional;
 * - removed by its owner when it stops (normal end, error, SIGINT/SIGTERM, process.exit); a SIGKILL leaves it.
 *
 * A lock is stale when its owner is gone: same hostname and kill(pid, 0) fails with ESRCH (EPERM means alive, another
 * user's process), or /proc/<pid>/stat gives another start time than `procStart` (the PID was reused), or the PID is
 * this process's and this process does not hold the lock (a container restarted under the same PID). A lock from
 * another host cannot be judged: it is refused, with the `rm` that removes it. A file that is not such JSON (its
 * writer died between create and write) is stale once it is CORRUPT_GRACE_MS old, or unchanged for that long.
 * Limits: two hosts (or containers) that share a directory and a hostname look like one host; a PID reused within
 * one boot on a system without /proc/<pid>/stat is taken for the owner (the lock is then refused, never stolen).
 *
 * Taking over a stale lock must not let two processes win. The common recipe (rename the stale file away, create a
 * new one) fails: two processes that both read the stale lock rename it and then, one of them, the other's new lock.
 * POSIX has no compare-and-swap on a path, so removal goes through a claim:
 *   1. read the lock; its identity `id` hashes its bytes, inode and mtime (every new lock has other bytes);
 *   2. create `<lock>.takeover-<id>` with O_EXCL: one process per stale generation holds the claim, the others wait
 *      and retry (they then meet the new owner's live lock and are refused);
 *   3. holding the claim, re-read the lock; still `id`: unlink it. Nobody else can have removed or replaced it
 *      in between: its owner is dead, and only the holder of the claim on `id` removes it;
 *   4. remove the claim, go back to the O_EXCL create (a fresh starter may win it first: then this one is refused).
 * A claim is a lock file of the same format, so one left by a taker that died is taken over the same way (a claim
 * on the claim), up to MAX_DEPTH levels. Once its generation is gone a claim is inert (step 3 finds another id);
 * the next owner sweeps them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp, readFileSync, rmdirSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from '../errors.ts';

/** The lock's name inside the run directory (hidden: `ls` and the readers pass it by). */
export const RUN_LOCK_FILE = '.lock';

/** A lock file that is not valid JSON is its writer's, still writing, for this long (then stale). */
export const CORRUPT_GRACE_MS = 3000;

/** Levels of claims (a claim on a dead taker's claim, ...) before a person is asked to remove the files. */
const MAX_DEPTH = 3;
/** How long acquireRunLock waits for a take-over by another process (or a lock file being written) to finish. */
const WAIT_MS = CORRUPT_GRACE_MS + 5000;
const POLL_MS = 50;
/** Lock files are a few hundred bytes; more is read as corrupt. */
const MAX_LOCK_BYTES = 64 * 1024;

/** The content of a lock file (see the module header). */
export interface RunLockOwner {
  pid: number;
  hostname: string;
  /** ISO 8601 */
  startedAt: string;
  command?: string;
  argv?: string[];
  token?: string;
  /** Linux: field 22 of /proc/<pid>/stat when the lock was taken */
  procStart?: string;
}

/** A second writer: the run directory is locked by a live process (or by one on another host). */
export class RunLockedError extends UserError {
  override name = 'RunLockedError';
  constructor(
    message: string,
    readonly lockFile: string,
    readonly owner: RunLockOwner | null,
  ) {
    super(message);
  }
}

// Tokens of the lock and claim files this process holds or is creating: a file with this process's PID is live
// only when its token is here (registered before the O_EXCL create, so a concurrent acquirer in the same process
// never mistakes a lock being made for a stale one).
const heldTokens = new Set<string>();
const heldLocks = new Set<RunLock>();
let exitHookInstalled = false;

/** An exclusive lock on a run directory, held until release(). */
export class RunLock {
  private released = false;

  /** @internal use acquireRunLock */
  constructor(
    /** the run directory, as given */
    readonly dir: string,
    /** `<dir>/.lock` */
    readonly file: string,
    readonly owner: RunLockOwner & { token: string },
    /** what acquiring did besides creating the lock, one line each: the take-over of a stale lock */
    readonly notes: readonly string[],
    private readonly createdDirs: readonly string[],
  ) {}

  /**
   * Remove the lock file (if it is still this lock's), then the directories the caller made for this run
   * (`createdDirs`) that are empty now, deepest first. Idempotent.
   */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    heldLocks.delete(this);
    await removeOwn(this.file, this.owner.token);
    for (const d of [...this.createdDirs].reverse()) await fsp.rmdir(d).catch(() => {});
  }

  /** release() for process 'exit' handlers, where nothing asynchronous runs any more. */
  releaseSync(): void {
    if (this.released) return;
    this.released = true;
    heldLocks.delete(this);
    try {
      if (parseOwner(readFileSync(this.file))?.token === this.owner.token) unlinkSync(this.file);
    } catch {
      // gone already
    }
    heldTokens.delete(this.owner.token);
    for (const d of [...this.createdDirs].reverse()) {
      try {
        rmdirSync(d);
      } catch {
        // not empty: the run wrote something
      }
    }
  }
}

export interface RunLockOptions {
  /** what holds the lock, shown to a second writer: `(ddpm train)` (default 'ddpm-ts Trainer') */
  command?: string;
  /** directories made for this run, top down; release() removes those that are empty then (a failed start) */
  createdDirs?: readonly string[];
}

/**
 * Lock the existing directory `dir` for one writer: create `<dir>/.lock`, taking over a stale one (`notes` says so).
 * Throws RunLockedError (a UserError, exit code 2 in the CLI) when a live process holds it, or one on another host.
 * The lock is released by release(), and on process exit (process.exit included) by a hook installed here.
 */
export async function acquireRunLock(dir: string, opts: RunLockOptions = {}): Promise<RunLock> {
  const file = path.join(dir, RUN_LOCK_FILE);
  const procStart = procStartOf('self');
  const me: RunLockOwner = {
    pid: process.pid,
    hostname: os.hostname(),
    startedAt: new Date().toISOString(),
    command: opts.command ?? 'ddpm-ts Trainer',
    argv: process.argv.slice(2),
    ...(procStart !== undefined ? { procStart } : {}),
  };
  const ctx: TakeContext = { me, deadline: performance.now() + WAIT_MS, firstSeen: new Map(), notes: [], dir };
  const got = await take(file, 0, ctx);
  if (!got.won) {
    const o = got.owner;
    const who = o === null ? 'another process' : `PID ${o.pid} ${got.elsewhere ? `on host ${clean(o.hostname)}` : 'on this host'} since ${since(o.startedAt)} (${clean(o.command ?? 'unknown command')})`;
    const hint = got.elsewhere ? ` (this host cannot tell whether it still runs; if it has stopped: rm ${file})` : '';
    throw new RunLockedError(`${dir} is being trained by ${who}; wait for it or stop it${hint}`, file, o);
  }
  // claims of generations that are gone are inert (header, step 3): sweep those a dead taker left
  const prefix = `${RUN_LOCK_FILE}.takeover-`;
  for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
    if (name.startsWith(prefix)) await fsp.rm(path.join(dir, name), { force: true }).catch(() => {});
  }
  const lock = new RunLock(dir, file, { ...me, token: got.token }, ctx.notes, opts.createdDirs ?? []);
  heldLocks.add(lock);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const l of [...heldLocks]) l.releaseSync();
    });
  }
  return lock;
}

interface TakeContext {
  me: RunLockOwner;
  deadline: number;
  /** when this process first read a corrupt file, by id (corrupt files go stale by age or by staying unchanged) */
  firstSeen: Map<string, number>;
  notes: string[];
  dir: string;
}

type Taken = { won: true; token: string } | { won: false; owner: RunLockOwner | null; elsewhere: boolean };

/** Create the lock (or claim) file `file`, taking over a stale one through a claim one level down (header). */
async function take(file: string, depth: number, ctx: TakeContext): Promise<Taken> {
  const token = randomBytes(8).toString('hex');
  for (;;) {
    // 1. the O_EXCL create: the only way to hold the file
    heldTokens.add(token);
    try {
      await createOwnerFile(file, { ...ctx.me, token });
      return { won: true, token };
    } catch (e) {
      heldTokens.delete(token);
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    // 2. who holds it
    const seen = await readLockFile(file);
    if (seen === null) continue; // removed meanwhile: create again
    const verdict = judge(seen, ctx);
    if (verdict.kind === 'alive') return { won: false, owner: seen.owner, elsewhere: verdict.elsewhere };
    if (verdict.kind === 'wait') {
      await waitOrGiveUp(ctx, file);
      continue;
    }
    // 3. stale: remove exactly this generation, under the claim on its id
    if (depth >= MAX_DEPTH) {
      throw new UserError(`${file} is stale, but ${MAX_DEPTH} processes that took it over died in turn; remove ${path.join(path.dirname(file), `${RUN_LOCK_FILE}*`)} by hand`);
    }
    const claim = `${file}.takeover-${seen.id}`;
    const c = await take(claim, depth + 1, ctx);
    if (!c.won) {
      await waitOrGiveUp(ctx, claim); // another process is taking it over: it wins, or dies and its claim goes stale
      continue;
    }
    try {
      const again = await readLockFile(file);
      if (again?.id === seen.id) {
        await fsp.unlink(file);
        ctx.notes.push(depth === 0 ? verdict.note : `removed ${file}, the claim of a take-over that did not finish`);
      }
    } finally {
      await removeOwn(claim, c.token);
    }
    // 4. back to the create
  }
}

async function waitOrGiveUp(ctx: TakeContext, file: string): Promise<void> {
  if (performance.now() > ctx.deadline) {
    throw new UserError(`${ctx.dir}: another process kept ${file} for ${Math.round(WAIT_MS / 1000)} s while taking over a lock; try again (if no process is starting there, rm ${file})`);
  }
  await sleep(POLL_MS);
}

type Verdict = { kind: 'alive'; elsewhere: boolean } | { kind: 'wait' } | { kind: 'stale'; note: string };

function judge(seen: SeenFile, ctx: TakeContext): Verdict {
  const o = seen.owner;
  if (o === null) {
    const now = performance.now();
    const first = ctx.firstSeen.get(seen.id) ?? now;
    ctx.firstSeen.set(seen.id, first);
    const age = Date.now() - seen.mtimeMs;
    // a writer between its create and its write: wait. By age on the file's clock, or unchanged that long on ours
    // (a file server's clock may be ahead).
    if (age < CORRUPT_GRACE_MS && now - first < CORRUPT_GRACE_MS) return { kind: 'wait' };
    return { kind: 'stale', note: `taking over ${seen.file}, which holds no readable lock (its writer died while creating it, ${Math.max(0, Math.round(age / 1000))} s ago)` };
  }
  if (o.hostname !== ctx.me.hostname) return { kind: 'alive', elsewhere: true };
  const taking = `taking over the lock of PID ${o.pid} (started ${since(o.startedAt)}), which is no longer running`;
  if (o.pid === process.pid) {
    // this process's PID: live only if this process holds it (a previous process with the same PID, else)
    return o.token !== undefined && heldTokens.has(o.token) ? { kind: 'alive', elsewhere: false } : { kind: 'stale', note: `${taking} (this process has its PID now)` };
  }
  try {
    process.kill(o.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return { kind: 'stale', note: taking };
    // EPERM: alive, another user's process
  }
  const now = o.procStart !== undefined ? procStartOf(String(o.pid)) : undefined;
  if (now !== undefined && now !== o.procStart) return { kind: 'stale', note: `${taking} (PID ${o.pid} now belongs to a process started later)` };
  return { kind: 'alive', elsewhere: false };
}

interface SeenFile {
  file: string;
  /** hash of the bytes, inode and mtime: which generation of the file this is */
  id: string;
  owner: RunLockOwner | null;
  mtimeMs: number;
}

/** The file as it is now, or null when there is none. */
async function readLockFile(file: string): Promise<SeenFile | null> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try {
    const st = await fh.stat();
    const buf = Buffer.alloc(Math.min(st.size, MAX_LOCK_BYTES));
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const bytes = buf.subarray(0, bytesRead);
    const id = createHash('sha256').update(`${st.ino}:${st.mtimeMs}:${st.size}\n`).update(bytes).digest('hex').slice(0, 16);
    return { file, id, owner: st.size > MAX_LOCK_BYTES ? null : parseOwner(bytes), mtimeMs: st.mtimeMs };
  } finally {
    await fh.close();
  }
}

/** A lock file's owner, or null when the bytes are not one (empty, cut short, not JSON, a required field missing). */
export function parseOwner(bytes: Uint8Array): RunLockOwner | null {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  if (!Number.isSafeInteger(o.pid) || (o.pid as number) < 1) return null;
  if (typeof o.hostname !== 'string' || typeof o.startedAt !== 'string' || Number.isNaN(Date.parse(o.startedAt))) return null;
  const str = (k: string) => (typeof o[k] === 'string' ? { [k]: o[k] as string } : {});
  return {
    pid: o.pid as number,
    hostname: o.hostname,
    startedAt: o.startedAt,
    ...str('command'),
    ...(Array.isArray(o.argv) && o.argv.every((a) => typeof a === 'string') ? { argv: o.argv as string[] } : {}),
    ...str('token'),
    ...str('procStart'),
  };
}

async function createOwnerFile(file: string, owner: RunLockOwner): Promise<void> {
  const fh = await fsp.open(file, 'wx', 0o644);
  try {
    await fh.writeFile(JSON.stringify(owner) + '\n');
  } catch (e) {
    await fh.close();
    await fsp.rm(file, { force: true }); // ours (O_EXCL): a full disk leaves no empty lock behind
    throw e;
  }
  await fh.close();
}

/** Remove `file` if it still holds `token` (a lock or claim of this process), and forget the token. */
async function removeOwn(file: string, token: string): Promise<void> {
  try {
    const seen = await readLockFile(file);
    if (seen?.owner?.token === token) await fsp.unlink(file);
  } catch {
    // gone already, or unreadable: not ours to remove
  } finally {
    heldTokens.delete(token);
  }
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); undefined off Linux or when unreadable. */
function procStartOf(pid: string): string | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // fields after "(comm)", which may itself hold spaces and parentheses: field 3 is the first
    const v = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[22 - 3];
    return v !== undefined && /^\d+$/.test(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** "12:01" today (local time), "2026-12-01 12:01" on another day. */
export function since(iso: string, now = new Date()): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return clean(iso);
  const p = (n: number) => String(n).padStart(2, '0');
  const hm = `${p(d.getHours())}:${p(d.getMinutes())}`;
  const today = d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate();
  return today ? hm : `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${hm}`;
}

/** A string from the file, fit for one line of a message. */
function clean(s: string): string {
  return s.replace(/[\x00-\x1f\x7f]/g, '?').slice(0, 200);
}

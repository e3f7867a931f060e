/**
 * One writer per run directory (issue 34, src/io/run-lock.ts): `ddpm train` locks `<out>/.lock` before it reads the
 * run directory; a second trainer exits 2 with one line naming the holder; a lock left by a SIGKILL is taken over by
 * the next --resume; readers take no lock. Unit tests of the module: stale (dead PID, reused PID, this process's
 * PID), another host, a corrupt or half-written file, and concurrent take-overs (at most one wins).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { runDdpm, soakArgs, writeSoakImages } from '../scripts/soak-kill.ts';
import { RUN_LOCK_FILE, RunLockedError, acquireRunLock, since, type RunLockOwner } from '../src/io/run-lock.ts';
import { applyOptions, defaultTrainConfig } from '../src/train/config.ts';
import { Trainer } from '../src/train/trainer.ts';
import { assertUserError, runCli, squares } from './cli-helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let dir: string;
let data: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-train-lock-'));
  data = path.join(dir, 'data');
  await writeSoakImages(data);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A fresh run directory under the test's temporary one. */
async function runDir(name: string): Promise<string> {
  const d = path.join(dir, name);
  await mkdir(d, { recursive: true });
  return d;
}

/** A lock file as another process would write it. */
async function writeLock(d: string, owner: Partial<RunLockOwner>): Promise<string> {
  const file = path.join(d, RUN_LOCK_FILE);
  const full = { pid: 1, hostname: os.hostname(), startedAt: new Date().toISOString(), command: 'ddpm train', ...owner };
  await writeFile(file, JSON.stringify(full) + '\n');
  return file;
}

/** The PID of a process that has exited (and been reaped). */
function deadPid(): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', () => resolve(child.pid!));
  });
}

/** A live process (until kill()), for a lock that must be refused. */
function liveProcess(): { pid: number; kill: () => void } {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 120000)'], { stdio: 'ignore' });
  return { pid: child.pid!, kill: () => child.kill('SIGKILL') };
}

const lockOf = async (d: string) => JSON.parse(await readFile(path.join(d, RUN_LOCK_FILE), 'utf8')) as RunLockOwner;
const hhmm = /\d\d:\d\d/.source;

// ---------------------------------------------------------------------------------------------------------------
// The module

test('a lock holds the owner (pid, host, start, command, token); release removes it and the empty directories made for the run', async () => {
  const parent = path.join(dir, 'made');
  const d = path.join(parent, 'run');
  await mkdir(d, { recursive: true });
  const lock = await acquireRunLock(d, { command: 'ddpm train', createdDirs: [parent, d] });
  const o = await lockOf(d);
  assert.equal(o.pid, process.pid);
  assert.equal(o.hostname, os.hostname());
  assert.equal(o.command, 'ddpm train');
  assert.ok(Math.abs(Date.parse(o.startedAt) - Date.now()) < 60_000, o.startedAt);
  assert.match(o.token!, /^[0-9a-f]{16}$/);
  if (process.platform === 'linux') assert.match(o.procStart!, /^\d+$/);
  assert.deepEqual(lock.notes, []);
  // a second writer in the same process is refused too
  await assert.rejects(acquireRunLock(d), (e: Error) => e instanceof RunLockedError && e.message.includes(`by PID ${process.pid} on this host`));
  await lock.release();
  assert.equal(existsSync(parent), false, 'the lock and the directories made for the run are gone');
});

test('a live process on this host holds the lock: refused with one line naming it; the file is left alone', async () => {
  const d = await runDir('live');
  const live = liveProcess();
  try {
    const file = await writeLock(d, { pid: live.pid });
    const before = await readFile(file, 'utf8');
    await assert.rejects(acquireRunLock(d), (e: Error) => {
      assert.ok(e instanceof RunLockedError);
      assert.match(e.message, new RegExp(`^${d.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is being trained by PID ${live.pid} on this host since ${hhmm} \\(ddpm train\\); wait for it or stop it$`));
      return true;
    });
    assert.equal(await readFile(file, 'utf8'), before);
  } finally {
    live.kill();
  }
});

test('another host: refused (its PID means nothing here), with the rm that removes it; a start on another day shows the date', async () => {
  const d = await runDir('elsewhere');
  const file = await writeLock(d, { pid: 4242, hostname: 'gpu-box-7', startedAt: new Date(Date.now() - 3 * 86_400_000).toISOString() });
  await assert.rejects(acquireRunLock(d), (e: Error) => {
    assert.match(e.message, new RegExp(`is being trained by PID 4242 on host gpu-box-7 since \\d{4}-\\d\\d-\\d\\d ${hhmm} \\(ddpm train\\); wait for it or stop it \\(this host cannot tell whether it still runs; if it has stopped: rm ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)$`));
    return true;
  });
  assert.ok(existsSync(file));
  const now = new Date(2026, 11, 3, 15, 0);
  assert.equal(since(new Date(2026, 11, 3, 12, 1).toISOString(), now), '12:01');
  assert.equal(since(new Date(2026, 11, 2, 23, 59).toISOString(), now), '2026-12-02 23:59');
});

test('a dead PID on this host: the lock is taken over, with a note', async () => {
  const d = await runDir('dead');
  const pid = await deadPid();
  await writeLock(d, { pid, startedAt: new Date(2026, 0, 1, 12, 1).toISOString() });
  const lock = await acquireRunLock(d);
  assert.deepEqual(lock.notes, [`taking over the lock of PID ${pid} (started 2026-01-01 12:01), which is no longer running`]);
  assert.equal((await lockOf(d)).pid, process.pid);
  await lock.release();
  assert.deepEqual(await readdir(d), [], 'no lock, no claim files');
});

test('a reused PID (another start time in /proc) and this process\'s own PID, not held by it, are stale too', async () => {
  const d = await runDir('reused');
  // this process's PID: a previous process had it (a container restarted under the same PID)
  await writeLock(d, { pid: process.pid, token: 'feedfacefeedface' });
  let lock = await acquireRunLock(d);
  assert.match(lock.notes[0]!, new RegExp(`^taking over the lock of PID ${process.pid} \\(started ${hhmm}\\), which is no longer running \\(this process has its PID now\\)$`));
  await lock.release();
  if (process.platform !== 'linux') return;
  const live = liveProcess();
  try {
    await writeLock(d, { pid: live.pid, procStart: '1' }); // started at boot + 1 tick: not this process
    lock = await acquireRunLock(d);
    assert.match(lock.notes[0]!, new RegExp(`PID ${live.pid} now belongs to a process started later`));
    await lock.release();
  } finally {
    live.kill();
  }
});

test('a corrupt lock file: stale once it is a few seconds old; while young it is waited for (its writer is still writing)', async () => {
  const d = await runDir('corrupt');
  const file = path.join(d, RUN_LOCK_FILE);
  // empty (the writer died between create and write), a minute old
  await writeFile(file, '');
  const old = new Date(Date.now() - 60_000);
  await utimes(file, old, old);
  let lock = await acquireRunLock(d);
  assert.match(lock.notes[0]!, /^taking over .*\.lock, which holds no readable lock \(its writer died while creating it, (59|60|61) s ago\)$/);
  await lock.release();
  // half a JSON object: a writer at work, which finishes 300 ms later; the wait then meets a live owner
  await writeFile(file, '{"pid":');
  const live = liveProcess();
  try {
    setTimeout(() => void writeLock(d, { pid: live.pid }), 300);
    const t0 = performance.now();
    await assert.rejects(acquireRunLock(d), (e: Error) => e instanceof RunLockedError && e.message.includes(`by PID ${live.pid} on this host`));
    assert.ok(performance.now() - t0 >= 250, 'waited for the writer');
  } finally {
    live.kill();
  }
  await rm(file);
  // garbage that stays garbage: taken over after the grace period, by the time this process has watched it
  await writeFile(file, 'not a lock');
  await utimes(file, new Date(Date.now() + 3_600_000), new Date(Date.now() + 3_600_000)); // a file server's clock ahead
  const t1 = performance.now();
  lock = await acquireRunLock(d);
  assert.ok(performance.now() - t1 >= 2900, 'waited out the grace period');
  assert.match(lock.notes[0]!, /holds no readable lock/);
  await lock.release();
});

test('concurrent take-overs of one stale lock in one process: exactly one wins, one note, no claim files left', async () => {
  for (let round = 0; round < 5; round++) {
    const d = await runDir(`race-${round}`);
    await writeLock(d, { pid: await deadPid() });
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => acquireRunLock(d)));
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1, JSON.stringify(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'won'))));
    for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof RunLockedError, String(r.reason));
    const lock = won[0]!.value;
    assert.equal((await lockOf(d)).token, lock.owner.token);
    assert.deepEqual(await readdir(d), [RUN_LOCK_FILE]);
    await lock.release();
  }
});

test('concurrent take-overs of one stale lock by four processes: exactly one wins', async () => {
  const d = await runDir('race-procs');
  await writeLock(d, { pid: await deadPid() });
  const lockUrl = new URL('../src/io/run-lock.ts', import.meta.url).href;
  // each child says 'ready' once loaded, tries when told to (all four at once), says what happened; the winner holds
  // the lock until its stdin ends
  const script = `
    import { acquireRunLock } from ${JSON.stringify(lockUrl)};
    console.log('ready');
    await new Promise((r) => process.stdin.once('data', r));
    try {
      const lock = await acquireRunLock(${JSON.stringify(d)});
      console.log('won');
      process.stdin.on('end', () => lock.release().then(() => process.exit(0)));
    } catch (e) {
      console.log('refused ' + e.name);
      process.exit(0);
    }`;
  const children = Array.from({ length: 4 }, () => {
    const c = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    c.stdin.on('error', () => {});
    let out = '';
    const lines = (n: number) => new Promise<string[]>((resolve) => {
      const check = () => {
        const got = out.split('\n').filter(Boolean);
        if (got.length >= n) resolve(got);
      };
      c.stdout.on('data', check);
      c.on('close', () => resolve(out.split('\n').filter(Boolean)));
      check();
    });
    c.stdout.setEncoding('utf8').on('data', (s: string) => void (out += s));
    return { c, lines, closed: new Promise((resolve) => c.on('close', resolve)) };
  });
  for (const k of children) assert.deepEqual(await k.lines(1), ['ready']);
  for (const k of children) k.c.stdin.write('go\n');
  const said = await Promise.all(children.map(async (k) => (await k.lines(2))[1] ?? 'nothing'));
  for (const k of children) k.c.stdin.end(); // every child has answered: the winner lets go
  await Promise.all(children.map((k) => k.closed));
  assert.equal(said.filter((s) => s === 'won').length, 1, said.join(' | '));
  assert.equal(said.filter((s) => s === 'refused RunLockedError').length, 3, said.join(' | '));
  assert.deepEqual(await readdir(d), []);
});

test('Trainer.create locks its run directory (unless given the lock) and a failed create leaves nothing behind', async () => {
  const cfg = applyOptions(defaultTrainConfig('tiny'), { 'batch-size': '8', T: '100', steps: '1', 'log-every': '1', 'sample-every': '0' });
  const out = path.join(dir, 'lib', 'run');
  const tr = await Trainer.create(ort as never, cfg, out, squares(), { threads: 1 });
  assert.equal((await lockOf(out)).pid, process.pid);
  await assert.rejects(Trainer.create(ort as never, cfg, out, squares(), { threads: 1 }), RunLockedError);
  await tr.train();
  await tr.release();
  assert.deepEqual((await readdir(out)).sort(), ['checkpoint']);
  const bad = path.join(dir, 'lib-bad', 'run');
  await assert.rejects(Trainer.create(ort as never, applyOptions(cfg, { 'init-from': path.join(dir, 'nope') }), bad, squares(), { threads: 1 }), /no such checkpoint directory/);
  assert.equal(existsSync(path.join(dir, 'lib-bad')), false);
});

// ---------------------------------------------------------------------------------------------------------------
// ddpm train

test('ddpm train on a directory another trainer holds: exit 2, one line naming it, nothing changed; a failed start on a new directory leaves none', async () => {
  const out = await runDir('cli-held');
  const lock = await acquireRunLock(out);
  try {
    const r = await runCli(soakArgs(out, data, 2, true));
    assertUserError(r, new RegExp(`^error: ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is being trained by PID ${process.pid} on this host since ${hhmm} \\(ddpm-ts Trainer\\); wait for it or stop it\\n$`));
    assert.deepEqual(await readdir(out), [RUN_LOCK_FILE]);
  } finally {
    await lock.release();
  }
  const fresh = path.join(dir, 'cli-fresh', 'run');
  assertUserError(await runCli(['train', '--out', fresh, '--config', 'huge']), /unknown preset 'huge'/);
  assert.equal(existsSync(path.join(dir, 'cli-fresh')), false, 'the directories made for the lock are removed again');
});

test('two ddpm train started together on one --out: exactly one runs, the other exits 2 at once with one line', async () => {
  const out = path.join(dir, 'two');
  const [a, b] = await Promise.all([runDdpm(soakArgs(out, data, 20, false)), runDdpm(soakArgs(out, data, 20, false))]);
  const [ran, refused] = a.code === 0 ? [a, b] : [b, a];
  assert.equal(ran.code, 0, ran.stderr.slice(-1500));
  assert.equal(refused.code, 2, refused.stderr.slice(-1500));
  assert.equal(refused.startStep, null, 'the second trainer did not start');
  const lines = refused.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('ckpt-op '));
  assert.equal(lines.length, 1, refused.stderr);
  assert.match(lines[0]!, new RegExp(`^error: ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is being trained by PID \\d+ on this host since ${hhmm} \\(ddpm train\\); wait for it or stop it$`));
  assert.match(ran.stdout, /^done: 20 steps/m);
  assert.deepEqual((await readdir(out)).sort(), ['checkpoint', 'log.jsonl'], 'the lock is gone');
});

test('a trainer killed with SIGKILL leaves its lock; the next --resume takes it over with a note and completes', async () => {
  const out = path.join(dir, 'killed');
  const k = await runDdpm(soakArgs(out, data, 400, false), { killAfterStartMs: 200 });
  assert.equal(k.signal, 'SIGKILL', k.stderr.slice(-1500));
  const stale = await lockOf(out);
  assert.equal(stale.command, 'ddpm train');
  const r = await runDdpm(soakArgs(out, data, 8, true));
  assert.equal(r.code, 0, r.stderr.slice(-1500));
  assert.match(r.stderr, new RegExp(`^note: taking over the lock of PID ${stale.pid} \\(started ${hhmm}\\), which is no longer running$`, 'm'));
  assert.ok(!existsSync(path.join(out, RUN_LOCK_FILE)));
  assert.match(r.stdout, /^done: \d+ steps/m);
});

test('a reader during training: ddpm sample reads the checkpoint while the trainer holds the lock; SIGTERM then releases it', async () => {
  const out = path.join(dir, 'reader');
  const args = soakArgs(out, data, 0, false); // --steps 0: until stopped
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src', 'cli', 'bin.ts'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => void (stderr += s));
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  await new Promise<void>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      if (/^checkpoint: .* \(step 2\)$/m.test(stdout)) resolve();
    });
    child.on('close', () => reject(new Error(`the trainer ended early:\n${stderr}`)));
  });
  try {
    assert.equal((await lockOf(out)).pid, child.pid);
    const png = path.join(dir, 'reader.png');
    const s = await runCli(['sample', '--checkpoint', path.join(out, 'checkpoint'), '--n', '2', '--steps', '2', '--out', png, '--threads', '1']);
    assert.equal(s.code, 0, s.stderr);
    assert.ok(existsSync(png));
    assert.equal(child.exitCode, null, 'the trainer still runs');
    assert.equal((await lockOf(out)).pid, child.pid);
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await closed, 143, stderr);
  assert.ok(!existsSync(path.join(out, RUN_LOCK_FILE)), 'released on SIGTERM');
});

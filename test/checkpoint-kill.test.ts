/**
 * A checkpoint writer is SIGKILLed just before each file operation of a checkpoint write (the test-only hook in
 * src/io/atomic.ts), one kill per operation; then `ddpm sample --checkpoint` and `ddpm train --resume` must both
 * find the newest complete state: the previous checkpoint until `rename checkpoint -> checkpoint.old`, the new one
 * from there on (before issue 12, a kill between the two renames made sample fail and --resume start over).
 * The killed writer is a small child that calls saveCheckpoint, as the trainer does, with the state a real
 * `ddpm train` wrote (the test checks that both make the same operations); scripts/soak-kill.ts kills real
 * training runs (test/soak-kill.test.ts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  diskState, fingerprint, fingerprintDiff, runDdpm, runNode, soakArgs, writeSoakImages, type ChildRun, type Fingerprint,
} from '../scripts/soak-kill.ts';
import { runCli } from './cli-helpers.ts';

let dir: string;
let data: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-ckpt-kill-'));
  data = path.join(dir, 'data');
  await writeSoakImages(data);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The operations of one checkpoint write, from the hook's trace (`ckpt-op <n> <op> <path>` on stderr). */
function traceOps(r: ChildRun): string[] {
  return [...r.stderr.matchAll(/^ckpt-op \d+ (\S+) (.*)$/gm)].map((m) => (/^(write|fsync)$/.test(m[1]!) ? `${m[1]} ${path.basename(m[2]!)}` : m[1]!));
}

/** Run `jobs` two at a time (the children are mostly start-up). */
async function pool<T>(jobs: (() => Promise<T>)[]): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]!();
    }
  };
  await Promise.all([worker(), worker()]);
  return out;
}

const describe = (r: ChildRun) => `exit ${r.code} ${r.signal}\n${r.stderr.slice(-1500)}`;

const checkpointUrl = new URL('../src/train/checkpoint.ts', import.meta.url).href;

/** A child that writes the checkpoint `source` (as loaded) to `<out>/checkpoint` with saveCheckpoint, as the trainer does. */
function writeCheckpointChild(source: string, out: string, fault: number): Promise<ChildRun> {
  const script = `
    import { loadCheckpoint, saveCheckpoint } from ${JSON.stringify(checkpointUrl)};
    await saveCheckpoint(${JSON.stringify(path.join(out, 'checkpoint'))}, await loadCheckpoint(${JSON.stringify(source)}));`;
  return runNode(['--import', 'tsx', '--input-type=module', '-e', script], { fault });
}

/**
 * From a copy of `template` (or nothing), the checkpoint `source` written and killed before operation k, for each
 * k; then for each: sample and `ddpm train --resume --steps <steps>` find `expected(k)` (null: no checkpoint),
 * matching `refs`, and the resumed run ends where an uninterrupted one does (refs at `steps`).
 */
async function killAtEveryOperation(name: string, template: string | null, source: string, steps: number, ops: string[], expected: (k: number) => number | null, refs: Map<number, Fingerprint>) {
  // the writer makes the operations that the real trainer made
  const dry = path.join(dir, `${name}-dry`);
  if (template) await cp(template, dry, { recursive: true });
  const w = await writeCheckpointChild(source, dry, 0);
  assert.equal(w.code, 0, describe(w));
  assert.deepEqual(traceOps(w).slice(0, ops.length), ops);
  const runs = await pool(ops.map((_, i) => async () => {
    const out = path.join(dir, `${name}-k${i + 1}`);
    if (template) await cp(template, out, { recursive: true });
    return { out, child: await writeCheckpointChild(source, out, i + 1) };
  }));
  for (const [i, { out, child }] of runs.entries()) {
    const k = i + 1;
    const at = `${name}: kill before operation ${k} (${ops[i]})`;
    assert.equal(child.signal, 'SIGKILL', `${at}: ${describe(child)}`);
    assert.equal(traceOps(child).at(-1), ops[i], at);
    const ckpt = path.join(out, 'checkpoint');
    const want = expected(k);
    const disk = await diskState(ckpt);

    // 1. sample: reads the newest complete state without touching the run directory
    const listing = (await readdir(out)).sort();
    const s = await runCli(['sample', '--checkpoint', ckpt, '--n', '1', '--steps', '2', '--out', path.join(dir, 'sample.png'), '--threads', '1']);
    assert.deepEqual((await readdir(out)).sort(), listing, `${at}: sample changed the run directory`);
    if (want === null) {
      assert.equal(s.code, 2, `${at} (disk ${disk}): ${s.stderr}`);
      assert.match(s.stderr, /no such file or directory/);
    } else {
      assert.equal(s.code, 0, `${at} (disk ${disk}): ${s.stderr}`);
      const m = /; model (.*)\/(?:ema|params)\.safetensors \(.*, step (\d+)\)/.exec(s.stdout);
      assert.ok(m, s.stdout);
      assert.equal(Number(m[2]), want, `${at} (disk ${disk}): sample read step ${m[2]} from ${m[1]}`);
      assert.deepEqual(fingerprintDiff(fingerprint(m[1]!), refs.get(want)!), [], `${at}: sample read a state that differs from step ${want}`);
    }

    // 2. train --resume: recovers, starts from the same state, and continues to the same end as an uninterrupted run
    const r = await runCli(soakArgs(out, data, steps, true));
    assert.equal(r.code, 0, `${at}: ${r.stderr}`);
    assert.match(r.stdout, want === null ? /^training tiny .* from step 0/m : new RegExp(`^resuming tiny .* from step ${want};`, 'm'), `${at} (disk ${disk})`);
    if (want === null) assert.match(r.stderr, /note: no checkpoint/);
    assert.equal(await diskState(ckpt), 'checkpoint', at);
    assert.deepEqual(fingerprintDiff(fingerprint(ckpt), refs.get(steps)!), [], `${at}: the resumed run ends elsewhere than an uninterrupted one`);
  }
}

test('kill at every operation of a checkpoint write that replaces one: sample and --resume find the newest complete state', async () => {
  // a run at step 2, then a traced (not killed) resume to step 3: the operations of one write
  const template = path.join(dir, 'template');
  const a = await runDdpm(soakArgs(template, data, 2, false));
  assert.equal(a.code, 0, describe(a));
  const traced = path.join(dir, 'traced');
  await cp(template, traced, { recursive: true });
  const b = await runDdpm(soakArgs(traced, data, 3, true));
  assert.equal(b.code, 0, describe(b));
  const ops = traceOps(b);
  assert.deepEqual(ops, [
    'mkdir-new',
    'write config.json', 'fsync config.json', 'write ema.safetensors', 'fsync ema.safetensors',
    'write optimizer.safetensors', 'fsync optimizer.safetensors', 'write params.safetensors', 'fsync params.safetensors',
    'write state.json', 'fsync state.json',
    'fsync-new', 'rename-to-old', 'fsync-parent', 'rename-new', 'fsync-parent', 'rm-old', 'done',
  ]);
  const refs = new Map([[2, fingerprint(path.join(template, 'checkpoint'))], [3, fingerprint(path.join(traced, 'checkpoint'))]]);
  const swap = ops.indexOf('rename-to-old') + 1; // killed before it: the old checkpoint is still in place
  await killAtEveryOperation('replace', template, path.join(traced, 'checkpoint'), 3, ops, (k) => (k <= swap ? 2 : 3), refs);
});

test('kill at every operation of the first checkpoint write: nothing, then the complete first checkpoint', async () => {
  const traced = path.join(dir, 'first');
  const b = await runDdpm(soakArgs(traced, data, 1, true));
  assert.equal(b.code, 0, describe(b));
  assert.match(b.stderr, /note: no checkpoint/);
  const ops = traceOps(b);
  assert.deepEqual(ops.slice(-4), ['fsync-new', 'rename-new', 'fsync-parent', 'done']);
  const refs = new Map([[1, fingerprint(path.join(traced, 'checkpoint'))]]);
  const commit = ops.indexOf('rename-new') + 1;
  await killAtEveryOperation('first', null, path.join(traced, 'checkpoint'), 1, ops, (k) => (k <= commit ? null : 1), refs);
});

test('kill during the recovery of a swap interrupted between its renames: the newer checkpoint survives', async () => {
  // a run at step 2, killed between `checkpoint -> checkpoint.old` and `checkpoint.new -> checkpoint` of step 3
  const template = path.join(dir, 'swap-template');
  assert.equal((await runDdpm(soakArgs(template, data, 2, false))).code, 0);
  const refs = new Map([[2, fingerprint(path.join(template, 'checkpoint'))]]);
  const killed = await runDdpm(soakArgs(template, data, 3, true), { fault: 15 }); // before rename-new (see above)
  assert.equal(killed.signal, 'SIGKILL');
  assert.equal(await diskState(path.join(template, 'checkpoint')), 'new+old');
  refs.set(3, fingerprint(path.join(template, 'checkpoint.new')));
  const source = path.join(dir, 'swap-step3');
  await cp(path.join(template, 'checkpoint.new'), source, { recursive: true });
  // the recovery a resume runs first: rename .new into place, fsync, remove .old
  const traced = path.join(dir, 'swap-traced');
  await cp(template, traced, { recursive: true });
  const t = await runDdpm(soakArgs(traced, data, 3, true));
  assert.equal(t.code, 0, describe(t));
  // (then the trainer, with nothing left to train, writes step 3 again: operations covered by the first test)
  const ops = traceOps(t).filter((op) => op.startsWith('recover'));
  assert.deepEqual(ops, ['recover-rename', 'recover-fsync-parent', 'recover-rm-old']);
  await killAtEveryOperation('recover', template, source, 3, ops, () => 3, refs);
});

test('a run killed while writing its time snapshot writes it again on resume', async () => {
  // --snapshot-minutes 1e-6: the time mark passes at step 1
  const snapArgs = (out: string) => [...soakArgs(out, data, 2, true), '--snapshot-minutes', '0.000001'];
  const traced = await runDdpm(snapArgs(path.join(dir, 'snap-traced')));
  assert.equal(traced.code, 0, describe(traced));
  const ops = [...traced.stderr.matchAll(/^ckpt-op (\d+) (\S+) (.*)$/gm)];
  const k = ops.find((m) => m[2] === 'fsync' && m[3]!.includes('snapshot-0.000001min.new'))![1]!; // mid-write
  const out = path.join(dir, 'snap');
  const killed = await runDdpm(snapArgs(out), { fault: Number(k) });
  assert.equal(killed.signal, 'SIGKILL', describe(killed));
  const r = await runDdpm(snapArgs(out));
  assert.equal(r.code, 0, describe(r));
  assert.equal(await diskState(path.join(out, 'snapshot-0.000001min')), 'checkpoint');
  assert.equal(fingerprint(path.join(out, 'snapshot-0.000001min')).step, 1);
});

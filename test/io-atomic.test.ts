import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readCheckpointDirStable, recoverCheckpointDir, resolveCheckpointDir, writeCheckpointDir, writeFileAtomic } from '../src/io/atomic.ts';

function withTmp(fn: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ddpm-atomic-'));
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const read = (f: string) => readFileSync(f, 'utf8');
const crash = () => {
  throw new Error('simulated crash');
};

test('writeFileAtomic writes, replaces, and leaves no temp files', withTmp(async (dir) => {
  const file = path.join(dir, 'a.json');
  await writeFileAtomic(file, '{"v":1}');
  assert.equal(read(file), '{"v":1}');
  await writeFileAtomic(file, new TextEncoder().encode('{"v":2}'));
  assert.equal(read(file), '{"v":2}');
  assert.deepEqual(readdirSync(dir), ['a.json']);
}));

test('writeFileAtomic failure keeps the old content and removes the temp file', withTmp(async (dir) => {
  const file = path.join(dir, 'a.json');
  writeFileSync(file, 'old');
  let tmpSeen = '';
  await assert.rejects(
    writeFileAtomic(file, 'new', {
      beforeCommit: (tmp) => {
        tmpSeen = tmp;
        assert.equal(read(tmp), 'new'); // complete before the rename
        crash();
      },
    }),
    /simulated crash/,
  );
  assert.equal(path.dirname(tmpSeen), dir); // same directory, so rename is atomic
  assert.equal(read(file), 'old');
  assert.deepEqual(readdirSync(dir), ['a.json']);
  await assert.rejects(writeFileAtomic(path.join(dir, 'missing', 'b'), 'x'), /ENOENT/);
  assert.deepEqual(readdirSync(dir), ['a.json']);
}));

test('writeCheckpointDir creates, replaces whole directories, leaves no siblings', withTmp(async (dir) => {
  const ckpt = path.join(dir, 'runs', 'ckpt');
  await writeCheckpointDir(ckpt, { 'model.safetensors': new Uint8Array([1, 2]), 'state.json': '{"step":1}' });
  assert.deepEqual(readdirSync(ckpt).sort(), ['model.safetensors', 'state.json']);
  await writeCheckpointDir(ckpt, { 'state.json': '{"step":2}', 'ema.safetensors': 'e' });
  assert.deepEqual(readdirSync(ckpt).sort(), ['ema.safetensors', 'state.json']);
  assert.equal(read(path.join(ckpt, 'state.json')), '{"step":2}');
  assert.deepEqual(readdirSync(path.dirname(ckpt)), ['ckpt']);
  await assert.rejects(writeCheckpointDir(ckpt, { '../evil': 'x' }), /plain file name/);
}));

test('writeCheckpointDir failure keeps the previous checkpoint intact', withTmp(async (dir) => {
  const ckpt = path.join(dir, 'ckpt');
  await writeCheckpointDir(ckpt, { 'state.json': '{"step":1}' });
  await assert.rejects(
    writeCheckpointDir(ckpt, { 'state.json': '{"step":2}' }, { beforeCommit: crash }),
    /simulated crash/,
  );
  assert.equal(read(path.join(ckpt, 'state.json')), '{"step":1}');
  assert.deepEqual(readdirSync(dir), ['ckpt']);
}));

test('recoverCheckpointDir repairs every interrupted state', withTmp(async (dir) => {
  const ckpt = path.join(dir, 'ckpt');
  const make = (d: string, step: number, extra?: string) => {
    mkdirSync(d);
    writeFileSync(path.join(d, 'state.json'), `{"step":${step}}`);
    if (extra) writeFileSync(path.join(d, extra), '');
  };
  const step = () => JSON.parse(read(path.join(ckpt, 'state.json'))).step;

  // Interrupted while writing .new: the current checkpoint wins, .new is dropped.
  make(ckpt, 1);
  make(`${ckpt}.new`, 2);
  assert.equal(await recoverCheckpointDir(ckpt), 'ok');
  assert.equal(step(), 1);
  assert.deepEqual(readdirSync(dir), ['ckpt']);

  // Interrupted between the two renames: .new is complete and is promoted.
  rmSync(ckpt, { recursive: true });
  make(`${ckpt}.old`, 1);
  make(`${ckpt}.new`, 2);
  assert.equal(await recoverCheckpointDir(ckpt), 'recovered');
  assert.equal(step(), 2);
  assert.deepEqual(readdirSync(dir), ['ckpt']);

  // Only .old left (someone removed .new): the previous checkpoint is restored.
  rmSync(ckpt, { recursive: true });
  make(`${ckpt}.old`, 1);
  assert.equal(await recoverCheckpointDir(ckpt), 'recovered');
  assert.equal(step(), 1);

  // Interrupted before the cleanup of .old.
  make(`${ckpt}.old`, 0);
  assert.equal(await recoverCheckpointDir(ckpt), 'ok');
  assert.deepEqual(readdirSync(dir), ['ckpt']);

  // First checkpoint interrupted while writing: nothing valid exists.
  rmSync(ckpt, { recursive: true });
  make(`${ckpt}.new`, 5, 'partial');
  assert.equal(await recoverCheckpointDir(ckpt), 'missing');
  assert.deepEqual(readdirSync(dir), []);

  // A writer starting from a crashed state repairs it first.
  make(`${ckpt}.old`, 1);
  make(`${ckpt}.new`, 2);
  await writeCheckpointDir(ckpt, { 'state.json': '{"step":3}' }, { fsync: false });
  assert.equal(step(), 3);
  assert.deepEqual(readdirSync(dir), ['ckpt']);
}));

test('a process killed (SIGKILL) mid-checkpoint leaves the previous checkpoint readable', withTmp(async (dir) => {
  const ckpt = path.join(dir, 'ckpt');
  await writeCheckpointDir(ckpt, { 'state.json': '{"step":1}' });
  const atomicUrl = new URL('../src/io/atomic.ts', import.meta.url).href;
  const script = `
    import { writeCheckpointDir } from ${JSON.stringify(atomicUrl)};
    await writeCheckpointDir(${JSON.stringify(ckpt)}, { 'state.json': '{"step":2}', 'big.bin': new Uint8Array(1 << 20) }, {
      beforeCommit: () => process.kill(process.pid, 'SIGKILL'),
    });`;
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
  assert.equal(r.signal, 'SIGKILL', r.stderr);
  assert.ok(existsSync(`${ckpt}.new`)); // the killed writer's leftovers
  assert.equal(await recoverCheckpointDir(ckpt), 'ok');
  assert.equal(read(path.join(ckpt, 'state.json')), '{"step":1}');
  assert.deepEqual(readdirSync(dir), ['ckpt']);
}));

test('resolveCheckpointDir names the newest complete version without changing anything', withTmp(async (dir) => {
  const ckpt = path.join(dir, 'ckpt');
  const make = (d: string) => mkdirSync(d);
  const look = async () => {
    const before = readdirSync(dir).sort();
    const r = await resolveCheckpointDir(ckpt);
    assert.deepEqual(readdirSync(dir).sort(), before, 'read-only');
    return r === null ? null : path.basename(r);
  };
  assert.equal(await look(), null); // nothing
  make(`${ckpt}.new`);
  assert.equal(await look(), null); // a first write in progress: .new may be partial
  make(`${ckpt}.old`);
  assert.equal(await look(), 'ckpt.new'); // between the renames: .new is complete
  rmSync(`${ckpt}.new`, { recursive: true });
  assert.equal(await look(), 'ckpt.old');
  make(ckpt);
  assert.equal(await look(), 'ckpt'); // before the cleanup of .old
  make(`${ckpt}.new`);
  assert.equal(await look(), 'ckpt');
  assert.equal(await resolveCheckpointDir(`${ckpt}/`), `${ckpt}/`);
}));

test('readCheckpointDirStable reads again when a writer swaps the directory during the read', withTmp(async (dir) => {
  const ckpt = path.join(dir, 'ckpt');
  await writeCheckpointDir(ckpt, { 'a.txt': 'v1', 'b.txt': 'v1' }, { fsync: false });
  const seen: string[] = [];
  const got = await readCheckpointDirStable(ckpt, async (d) => {
    const a = read(path.join(d, 'a.txt'));
    // the first time, a writer replaces the checkpoint between our two reads
    if (seen.length === 0) await writeCheckpointDir(ckpt, { 'a.txt': 'v2', 'b.txt': 'v2' }, { fsync: false });
    const b = read(path.join(d, 'b.txt'));
    seen.push(a + b);
    return a + b;
  });
  assert.deepEqual(seen, ['v1v2', 'v2v2']); // the mixed read was thrown away
  assert.deepEqual(got, { dir: ckpt, value: 'v2v2' });
  // a read error that no swap explains is passed on
  await assert.rejects(readCheckpointDirStable(ckpt, (d) => Promise.resolve(read(path.join(d, 'missing')))), /ENOENT/);
  assert.equal(await readCheckpointDirStable(path.join(dir, 'none'), () => Promise.resolve(1)), null);
}));

test('the test-only fault hook traces the protocol: every file operation of a checkpoint write, in order', withTmp(async (dir) => {
  const ckpt = path.join(dir, 'ckpt');
  await writeCheckpointDir(ckpt, { 'state.json': '{"step":1}' });
  const atomicUrl = new URL('../src/io/atomic.ts', import.meta.url).href;
  const script = `
    import { writeCheckpointDir } from ${JSON.stringify(atomicUrl)};
    await writeCheckpointDir(${JSON.stringify(ckpt)}, { 'b.bin': new Uint8Array(8), 'a.json': '{}' });`;
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const run = (fault: string) =>
    spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: root, encoding: 'utf8', env: { ...process.env, DDPM_TEST_CKPT_FAULT: fault },
    });
  const r = run('0');
  assert.equal(r.status, 0, r.stderr);
  const ops = [...r.stderr.matchAll(/^ckpt-op (\d+) (\S+) (.*)$/gm)].map((m) => `${m[2]} ${path.basename(m[3]!.split(' -> ')[0]!)}`);
  assert.deepEqual(ops, [
    'mkdir-new ckpt.new',
    'write a.json', 'fsync a.json', 'write b.bin', 'fsync b.bin',
    'fsync-new ckpt.new',
    'rename-to-old ckpt', 'fsync-parent ' + path.basename(dir),
    'rename-new ckpt.new', 'fsync-parent ' + path.basename(dir),
    'rm-old ckpt.old',
    'done ckpt',
  ]);
  // a kill at operation 8 (after the first rename): no ckpt/, .old and a complete .new
  const k = run('8');
  assert.equal(k.signal, 'SIGKILL', k.stderr);
  assert.deepEqual(readdirSync(dir).sort(), ['ckpt.new', 'ckpt.old']);
  assert.deepEqual(readdirSync(`${ckpt}.new`).sort(), ['a.json', 'b.bin']);
}));

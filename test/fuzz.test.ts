/**
 * The fuzz suite in CI (scripts/fuzz/): the harness catches each kind of failure at the right input; a short
 * seeded pass over every reader ends without a failure; so does every kept regression input
 * (test/fuzz-regressions/<target>/). A failure is a crash or abort, a hang over 5 s, a peak RSS over
 * max(512 MB, 10x the input), an exception other than the reader's own error, or an accepted invalid value.
 * The long campaign is `npm run fuzz -- --minutes N`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DEFAULT_SAVE_DIR, runFuzz, type Summary } from '../scripts/fuzz/fuzz.ts';
import { TARGETS } from '../scripts/fuzz/targets.ts';

/** Inputs per target in the seeded pass: about 1-3 s of work each on a 2-core machine. */
const CI_INPUTS: Record<string, number> = {
  safetensors: 3000, idx: 20000, png: 400, jpeg: 1000, 'image-folder': 150, config: 3000, state: 3000, onnx: 400, 'model-dir': 150,
  'sample-onnx': 40, 'serve-body': 400,
};
const CI_SEED = 12;

function failureList(s: Summary): string {
  return s.failures.map((f) => `  ${f.target} ${f.kind} x${f.count} ${f.files[0] ?? `input #${f.index}`}: ${f.error} ${f.message}`).join('\n');
}

test('fuzz harness: catches an unexpected error, a crash, an exit, a hang and an RSS peak at the right input', { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ddpm-fuzz-self-'));
  try {
    const cases = ['ok', 'type', 'crash', 'ok', 'exit', 'hang', 'reject', 'rss', 'ok'];
    mkdirSync(path.join(dir, 'selftest'));
    cases.forEach((c, i) => writeFileSync(path.join(dir, 'selftest', `${i}-${c}.txt`), c));
    const s = await runFuzz({ targets: ['selftest'], replay: dir, hangMs: 4000, log: null });
    const got = s.replayed!.map((r) => `${path.basename(r.file)} ${r.result}`);
    const want = ['ok', 'unexpected-error', 'crash', 'ok', 'crash', 'hang', 'ok', 'rss', 'ok'].map((r, i) => `${i}-${cases[i]}.txt ${r}`);
    assert.deepEqual(got, want);
    assert.equal(s.targets.selftest!.inputs, cases.length);
    assert.match(s.failures.find((f) => f.kind === 'crash')!.message, /SIGABRT/);
    assert.match(s.failures.find((f) => f.kind === 'rss')!.message, /alone in a fresh process/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fuzz: a seeded pass over every reader ends without a failure', { timeout: 180_000 }, async () => {
  assert.deepEqual(Object.keys(CI_INPUTS).sort(), TARGETS.map((t) => t.name).sort(), 'every target is in the CI pass');
  const s = await runFuzz({ seed: CI_SEED, inputs: CI_INPUTS, jobs: 2, saveDir: null, log: null });
  const rerun = `npm run fuzz -- --seed ${CI_SEED} --inputs <n> --target <name> keeps the failing inputs in test/fuzz-regressions/`;
  assert.equal(s.failures.length, 0, `failures:\n${failureList(s)}\n(${rerun})`);
  for (const [name, n] of Object.entries(CI_INPUTS)) {
    const t = s.targets[name]!;
    assert.equal(t.inputs, n, `${name}: every input ran`);
    // the mutations reach past the first check (some inputs are read) and are not all valid (some are refused)
    assert.ok(t.accepted > 0 && t.rejected > 0, `${name}: ${t.accepted} accepted, ${t.rejected} rejected`);
  }
});

test('fuzz: every kept regression input is read without a failure', { timeout: 180_000 }, async (t) => {
  const s = await runFuzz({ replay: DEFAULT_SAVE_DIR, jobs: 2, log: null });
  assert.ok(s.replayed!.length > 0, `no regression inputs in ${DEFAULT_SAVE_DIR}`);
  for (const r of s.replayed!) {
    await t.test(r.file, () => assert.equal(r.result, 'ok', r.message));
  }
});

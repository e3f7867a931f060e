/**
 * The SIGKILL soak (scripts/soak-kill.ts), short: a tiny training run checkpointing every step is killed 12 times
 * (timer kills anywhere, every third kill inside the checkpoint protocol through the test-only hook) and resumed;
 * every checkpoint state seen after a kill must be bit-exact against the uninterrupted run, none may be lost, and
 * every --resume must start where a reader finds the newest complete state. The full soak: npm run soak:kill.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSoak } from '../scripts/soak-kill.ts';

test('SIGKILL soak, 12 kills: every resumed state is bit-exact, no checkpoint lost', async () => {
  const lines: string[] = [];
  const s = await runSoak({ kills: 12, seed: 7, steps: 40, maxDelayMs: 400, log: (l) => lines.push(l) });
  assert.deepEqual(s.mismatches, [], lines.join('\n'));
  assert.equal(s.kills, 12);
  assert.ok(s.statesChecked >= 12, `states checked: ${s.statesChecked}`);
  assert.ok(s.resumes >= 12, `resumes checked: ${s.resumes}`);
  const hookKills = Object.entries(s.landed).filter(([k]) => k.startsWith('hook: before ')).reduce((a, [, n]) => a + n, 0);
  assert.equal(hookKills, 4, JSON.stringify(s.landed)); // kills 2, 5, 8, 11: inside a checkpoint write
  assert.ok(s.runsCompleted >= 1);
});

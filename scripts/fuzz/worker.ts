/**
 * A fuzz worker (a child of fuzz.ts): runs the inputs of one target and reports over IPC. Before each input it
 * writes the input's index to a heartbeat file with a synchronous write, so that when this process crashes,
 * aborts or hangs, the parent still knows which input did it. After each input it reads the process's peak RSS
 * (a high-watermark; on Linux restarted from the current RSS, after a garbage collection, once it passes half the
 * bound); an input at which it crosses the bound is rerun alone by the parent, and this worker exits so that the
 * next input starts afresh.
 */
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { promises as fsp } from 'node:fs';
import sharp from 'sharp';
import { makeInput, readCorpus, shortHash, type SeedFile } from './corpus.ts';
import { PHASE, rssLimit, type WorkerArgs, type WorkerMessage, type WorkerStats } from './protocol.ts';
import { targetByName } from './targets.ts';

/** Peak RSS of this process (since the last resetPeak), bytes. */
function maxRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** Linux: writing 5 to /proc/self/clear_refs restarts the peak RSS (VmHWM, getrusage's maxrss) from the current RSS. */
function resetPeak(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}
const canResetPeak = resetPeak();

async function runWorker(a: WorkerArgs): Promise<void> {
  sharp.cache(false); // libvips' operation cache would carry memory from one input into the next one's watermark
  sharp.concurrency(1);
  const target = targetByName(a.target);
  const seeds: SeedFile[] = a.corpus ? await readCorpus(a.corpus, a.target) : [];
  const runner = await target.open(a.tmp);
  const hb = openSync(a.heartbeat, 'r+');
  const rec = new Float64Array(2);
  const beat = (index: number, phase: number) => {
    rec[0] = index;
    rec[1] = phase;
    writeSync(hb, rec, 0, 16, 0);
  };
  const send = (m: WorkerMessage) => new Promise<void>((resolve) => process.send!(m, () => resolve()));
  const stats: WorkerStats = { inputs: 0, accepted: 0, rejected: 0, failures: 0, maxRssBytes: 0, maxRssIndex: -1, slowestMs: 0, slowestIndex: -1, errors: {} };
  let lastReport = Date.now();

  let i = a.start;
  for (; i < a.end && Date.now() < a.deadline; i++) {
    beat(i, PHASE.generating);
    const input = a.files ? new Uint8Array(await fsp.readFile(a.files[i]!)) : makeInput(target, seeds, a.seed, i);
    const limit = rssLimit(a.rssFloorBytes, input.length);
    const gc = (globalThis as { gc?: () => void }).gc;
    if (a.gcBefore) gc?.();
    // Once the watermark passes half the bound, collect garbage and restart it from the current RSS, so that
    // what earlier inputs left behind does not count against this one.
    if (a.gcBefore || (canResetPeak && maxRss() > limit / 2)) {
      gc?.();
      if (canResetPeak) resetPeak();
    }
    const rssBefore = maxRss();
    beat(i, PHASE.running);
    const t0 = performance.now();
    const outcome = await runner.run(input);
    const ms = performance.now() - t0;
    const rss = maxRss();
    stats.inputs++;
    if (ms > stats.slowestMs) (stats.slowestMs = ms), (stats.slowestIndex = i);
    const fail = async (kind: string, error: string, message: string) => {
      stats.failures++;
      await send({ type: 'fail', index: i, kind, error, message, hash: shortHash(input), bytes: input.length });
    };
    if (outcome.kind === 'accepted') stats.accepted++;
    else if (outcome.kind === 'rejected') {
      stats.rejected++;
      stats.errors[outcome.error] = (stats.errors[outcome.error] ?? 0) + 1;
    } else await fail(outcome.kind, outcome.error, outcome.message);
    if (ms > a.hangMs) await fail('hang', 'none', `took ${(ms / 1000).toFixed(1)} s (the parent did not stop it in time)`);
    if (rss > limit) {
      // The watermark may still hold live memory of earlier inputs: the parent reruns the input alone in a fresh
      // process to confirm (and takes that run's peak). This process ends, so the next input starts afresh.
      const mb = (b: number) => (b / 2 ** 20).toFixed(0);
      await fail('rss', 'none', `peak RSS ${mb(rss)} MB over the ${mb(limit)} MB bound (${mb(rssBefore)} MB before the input ran)`);
      i++;
      break;
    }
    if (rss > stats.maxRssBytes) (stats.maxRssBytes = rss), (stats.maxRssIndex = i);
    if (Date.now() - lastReport > 1000) {
      lastReport = Date.now();
      await send({ type: 'stats', stats });
    }
  }
  beat(-1, PHASE.finished);
  closeSync(hb);
  await runner.close();
  await send({ type: 'done', stats: { ...stats }, next: i });
  process.exit(0); // sessions and libvips threads may hold the event loop open
}

const args = JSON.parse(process.argv[2] ?? '{}') as WorkerArgs;
runWorker(args).catch((e: unknown) => {
  // a failure of the harness itself (not of a reader): the parent reports it as such
  process.stderr.write(`fuzz worker: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(70);
});

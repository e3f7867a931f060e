/**
 * The trainer: a TrainingRun (run.ts: the compiled step, the EMA, the data order and the random draws of Algorithm 1
 * of Ho et al. 2020) with what a run on disk needs: atomic checkpoints that resume exactly, a time budget, log
 * events, periodic sample grids and snapshots.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import type { ParamValue } from '../engine/tree.ts';
import type { OrtModule, RuntimeOptions } from '../engine/runtime.ts';
import { NonFiniteLossError, type TrainStep } from '../engine/train_step.ts';
import type { Dataset } from '../data/loader.ts';
import { writeImageGrid } from '../io/image.ts';
import { acquireRunLock, type RunLock } from '../io/run-lock.ts';
import { initUNet, unetParamShapes } from '../models/unet.ts';
import { Rng } from '../rng.ts';
import { CheckpointError, checkWeights, loadCheckpoint, loadModelDir, saveCheckpoint, warmStartWeights } from './checkpoint.ts';
import type { TrainConfig } from './config.ts';
import { RunStateError, TrainingRun, type RunStart, type TrainState } from './run.ts';

export { emaDecayAt } from './run.ts';

/**
 * One log event: averages over the steps since the previous one. Events come every `run.logEvery` steps and,
 * between those, whenever `run.logSeconds` have passed since the previous event (the first after at most
 * FIRST_LOG_SEC), so a slow run shows progress early and a long step count still shows it regularly.
 */
export interface StepLog {
  step: number;
  /** steps averaged in this event (logEvery, or fewer when time triggered it) */
  windowSteps: number;
  loss: number;
  mse: number;
  vb?: number;
  gradNorm: number;
  lr: number;
  imgPerSec: number;
  elapsedSec: number;
}

/** The first log event of a session comes after at most this many seconds (or `logSeconds`, if smaller). */
export const FIRST_LOG_SEC = 5;

export interface TrainerEvents {
  /** after every step */
  onStep?: (step: number, loss: number) => void;
  /** every `logEvery` steps and every `logSeconds` (see StepLog), with averages over the steps since the last */
  onLog?: (log: StepLog) => void;
  onSample?: (file: string, step: number) => void;
  onCheckpoint?: (dir: string, step: number) => void;
}

export interface TrainerOptions extends RuntimeOptions {
  /** continue from `<outDir>/checkpoint` if it exists */
  resume?: boolean;
  /**
   * The lock on `outDir` (src/io/run-lock.ts), taken by the caller, who releases it: `ddpm train` takes it before it
   * reads the run directory. Without it, create() takes one (making `outDir` if needed) and release() gives it back.
   */
  lock?: RunLock;
  events?: TrainerEvents;
  /** milliseconds on a monotonic clock, for the time budget and the log's timing (default performance.now; tests pass their own) */
  clock?: () => number;
}

async function exists(file: string): Promise<boolean> {
  return fsp.access(file).then(
    () => true,
    () => false,
  );
}

export class Trainer {
  private stopRequested = false;
  private lastSavedStep = -1;

  private constructor(
    private readonly ort: OrtModule,
    readonly config: TrainConfig,
    readonly outDir: string,
    readonly run: TrainingRun,
    private readonly opts: TrainerOptions,
    /** the run directory's lock: one writer per run directory (src/io/run-lock.ts) */
    readonly lock: RunLock,
    private readonly ownsLock: boolean,
  ) {}

  /**
   * A trainer writing into `outDir`. It holds the directory's lock (`opts.lock`, or its own) from before it reads a
   * checkpoint there until release(): a second trainer on the same directory is refused (RunLockedError).
   */
  static async create(ort: OrtModule, config: TrainConfig, outDir: string, dataset: Dataset, opts: TrainerOptions = {}): Promise<Trainer> {
    if (opts.lock !== undefined) {
      if (path.resolve(opts.lock.dir) !== path.resolve(outDir)) throw new Error(`Trainer.create: opts.lock is the lock of ${opts.lock.dir}, not of ${outDir}`);
      return Trainer.createLocked(ort, config, outDir, dataset, opts, opts.lock, false);
    }
    const made = await fsp.mkdir(outDir, { recursive: true }); // the first directory it made, if any
    const created: string[] = [];
    for (let d = path.resolve(outDir); made !== undefined; d = path.dirname(d)) {
      created.unshift(d);
      if (d === path.resolve(made) || d === path.dirname(d)) break;
    }
    const lock = await acquireRunLock(outDir, { createdDirs: created });
    try {
      return await Trainer.createLocked(ort, config, outDir, dataset, opts, lock, true);
    } catch (e) {
      await lock.release(); // and the directories made above, still empty
      throw e;
    }
  }

  private static async createLocked(ort: OrtModule, config: TrainConfig, outDir: string, dataset: Dataset, opts: TrainerOptions, lock: RunLock, ownsLock: boolean): Promise<Trainer> {
    const ckptDir = path.join(outDir, 'checkpoint');
    const resumed = opts.resume ? await loadCheckpoint(ckptDir, { expectConfig: config }) : null;
    let start: RunStart = {};
    if (resumed) {
      checkWeights(path.join(ckptDir, 'params.safetensors'), resumed.params, unetParamShapes(config.model));
      start = { params: resumed.params, ema: resumed.ema, optimizer: resumed.optimizer, state: resumed.state };
    } else if (config.run.initFrom) {
      const source = await loadModelDir(config.run.initFrom);
      start = { params: warmStartWeights(source.file, source.weights, initUNet(config.model, new Rng(config.run.seed).fold(0))) };
    }
    let run: TrainingRun;
    try {
      run = await TrainingRun.create(ort, config, dataset, start, opts);
    } catch (e) {
      if (!(e instanceof RunStateError)) throw e;
      const file = e.part === 'loader' ? 'state.json' : 'optimizer.safetensors';
      throw new CheckpointError(`${path.join(ckptDir, file)}: ${e.message}`);
    }
    const trainer = new Trainer(ort, config, outDir, run, opts, lock, ownsLock);
    if (resumed) trainer.lastSavedStep = run.state.step;
    return trainer;
  }

  /** The run's state: step, data position, images seen, training time. */
  get state(): TrainState {
    return this.run.state;
  }

  /** The compiled training step with the current weights and optimiser moments. */
  get step(): TrainStep {
    return this.run.step;
  }

  /** The EMA of the weights (what sampling uses). */
  get ema(): Map<string, ParamValue> {
    return this.run.ema;
  }

  /** Ask the loop to stop after the current step (it then writes a checkpoint). */
  requestStop(): void {
    this.stopRequested = true;
  }

  /** Learning rate of update `step`: warmup, constant, then the configured decay. */
  lrAt(step: number): number {
    return this.run.lrAt(step);
  }

  /**
   * Run until `run.steps` (or the time budget, or a stop request); writes checkpoints on the way. However it
   * stops, it ends with a checkpoint and (unless `sampleEvery` is 0, or no step was ever taken) a sample grid of
   * the last step, written once: the checkpoint first, as it is the one that matters when the user is waiting.
   */
  async train(): Promise<{ steps: number; stopped: 'done' | 'requested' | 'budget' }> {
    const { run } = this.config;
    const ev = this.opts.events ?? {};
    const B = this.config.data.batchSize;
    const budgetSec = run.minutes > 0 ? run.minutes * 60 : Infinity;
    const now = this.opts.clock ?? (() => performance.now());
    const sessionStart = now();
    const elapsedBase = this.state.elapsedSec;
    let window = { loss: 0, mse: 0, vb: 0, gradNorm: 0, n: 0, t0: now() };
    let nextLogSec = run.logSeconds > 0 ? Math.min(FIRST_LOG_SEC, run.logSeconds) : Infinity;
    // one log event: the averages over the steps since the previous one
    const log = () => {
      const dt = (now() - window.t0) / 1000;
      ev.onLog?.({
        step: this.state.step,
        windowSteps: window.n,
        loss: window.loss / window.n,
        mse: window.mse / window.n,
        vb: this.config.diffusion.varType === 'learnedRange' ? window.vb / window.n : undefined,
        gradNorm: window.gradNorm / window.n,
        lr: this.lrAt(this.state.step - 1),
        imgPerSec: (window.n * B) / dt,
        elapsedSec: this.state.elapsedSec,
      });
      window = { loss: 0, mse: 0, vb: 0, gradNorm: 0, n: 0, t0: now() };
    };
    let stopped: 'done' | 'requested' | 'budget' = 'done';
    while (run.steps === 0 || this.state.step < run.steps) {
      if (this.stopRequested) {
        stopped = 'requested';
        break;
      }
      const elapsed = elapsedBase + (now() - sessionStart) / 1000;
      if (elapsed >= budgetSec) {
        stopped = 'budget';
        break;
      }
      const elapsedBefore = this.state.elapsedSec;
      const n = this.state.step;
      let res;
      try {
        res = await this.run.next();
      } catch (e) {
        if (e instanceof NonFiniteLossError) {
          await this.checkpoint();
          throw new NonFiniteLossError(`step ${n}: ${e.message}. The last good state was saved to ${path.join(this.outDir, 'checkpoint')}; try a lower --lr or --clip-norm.`);
        }
        throw e;
      }
      this.state.elapsedSec = elapsedBase + (now() - sessionStart) / 1000;
      ev.onStep?.(this.state.step, res.loss);
      window.loss += res.loss;
      window.mse += res.aux.mse ?? res.loss;
      window.vb += res.aux.vb ?? 0;
      window.gradNorm += res.gradNorm;
      window.n++;
      if (this.state.step % run.logEvery === 0 || (now() - window.t0) / 1000 >= nextLogSec) {
        log();
        nextLogSec = run.logSeconds > 0 ? run.logSeconds : Infinity;
      }
      if (run.sampleEvery > 0 && this.state.step % run.sampleEvery === 0) await this.sampleGrid();
      // the snapshot before the step's checkpoint: killed while writing it, the run resumes from a checkpoint taken
      // before the time mark and writes the snapshot again
      await this.snapshotAtMark(elapsedBefore);
      if (this.state.step % run.checkpointEvery === 0) await this.checkpoint();
    }
    if (window.n > 0) log(); // the steps since the last event (a run stopped by time or by the user)
    // the time since the last step (its grid, its checkpoint) is training time too: a --minutes 30 run whose last
    // step ended just before the 30-minute mark still writes snapshot-30min, holding that step
    const lastStepSec = this.state.elapsedSec;
    this.state.elapsedSec = Math.max(lastStepSec, elapsedBase + (now() - sessionStart) / 1000);
    // then the checkpoint again, with that time: a resumed run must not pass the same mark and overwrite the snapshot
    const snapped = await this.snapshotAtMark(lastStepSec);
    if (snapped || this.lastSavedStep !== this.state.step) await this.checkpoint();
    if (run.sampleEvery > 0 && this.state.step > 0 && !(await exists(this.gridFile()))) await this.sampleGrid();
    return { steps: this.state.step, stopped };
  }

  /**
   * Every run.snapshotMinutes of training time, a copy of the checkpoint: snapshot-<M>min, snapshot-<2M>min, ...,
   * written when the training time passes a mark between `sinceSec` and now (`state.elapsedSec`); passing several
   * marks at once (a period shorter than a step) writes one, named after the first.
   */
  private async snapshotAtMark(sinceSec: number): Promise<boolean> {
    const snap = this.config.run.snapshotMinutes;
    if (!(snap > 0)) return false;
    const period = snap * 60; // seconds; marks compared with a 1 µs tolerance, so that k·period needs no exact float
    const mark = Math.floor(sinceSec / period + 1e-6 / period) + 1;
    if (this.state.elapsedSec < mark * period - 1e-6) return false;
    await this.snapshot(`snapshot-${Number((mark * snap).toPrecision(12))}min`);
    return true;
  }

  /** `<outDir>/samples/step_XXXXXXX.png` for the current step. */
  private gridFile(): string {
    return path.join(this.outDir, 'samples', `step_${String(this.state.step).padStart(7, '0')}.png`);
  }

  /** Write `<outDir>/checkpoint` atomically. */
  async checkpoint(): Promise<string> {
    const dir = await this.snapshot('checkpoint');
    this.lastSavedStep = this.state.step;
    return dir;
  }

  /** Write the current state as a checkpoint under `<outDir>/<name>` (kept, never overwritten by training). */
  async snapshot(name: string): Promise<string> {
    const dir = path.join(this.outDir, name);
    await saveCheckpoint(dir, this.run.contents());
    this.opts.events?.onCheckpoint?.(dir, this.state.step);
    return dir;
  }

  /** A DDIM sample grid from the EMA weights, written to `<outDir>/samples/step_XXXXXXX.png` (one class per column when conditional). */
  async sampleGrid(): Promise<string> {
    const m = this.config.model;
    const n = this.config.run.sampleCount;
    const x = await this.run.sampleEma(this.ort, n, this.config.run.sampleSteps, this.opts);
    const file = this.gridFile();
    await fsp.mkdir(path.dirname(file), { recursive: true });
    const K = m.numClasses;
    await writeImageGrid(file, x, [n, m.inChannels, m.imageSize, m.imageSize], { nrow: K > 0 && K <= 16 ? K : Math.ceil(Math.sqrt(n)) });
    this.opts.events?.onSample?.(file, this.state.step);
    return file;
  }

  /** Free the compiled step; then give back the run directory's lock, if create() took it. */
  async release(): Promise<void> {
    try {
      await this.run.release();
    } finally {
      if (this.ownsLock) await this.lock.release();
    }
  }
}


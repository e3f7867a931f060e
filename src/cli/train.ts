/** `ddpm train`: flags come from the typed config (src/train/config.ts), the work from the Trainer. */
import { appendFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { Command } from 'commander';
import type { Dataset } from '../data/loader.ts';
import { resolveCheckpointDir } from '../io/atomic.ts';
import { acquireRunLock, type RunLock } from '../io/run-lock.ts';
import { ensureExecutionProvider, nodeRuntime, ort } from '../node/ort.ts';
import { readConfig, recoverCheckpoint } from '../train/checkpoint.ts';
import { TRAIN_OPTIONS, applyOptions, defaultTrainConfig, validateTrainConfig, withClasses, type TrainConfig } from '../train/config.ts';
import { Trainer, type StepLog } from '../train/trainer.ts';
import { UNET_CONFIGS, describeUNet } from '../models/unet.ts';
import { Interrupted } from '../errors.ts';
import { MAX_GRID_PIXELS } from '../limits.ts';
import { UserError, checkModelFits, formatDuration } from './common.ts';
import { checkOutputDir, makeDirs, outputError, removeDirs } from './output.ts';
import { defaultOut, fitBatchToData, loadTrainData, planFolderData, type PlannedFolder } from './train-data.ts';
import { addTrainOptions, checkTrainInputs, sampleCommandFor } from './train-options.ts';

export function trainCommand(): Command {
  const cmd = new Command('train').description('train a DDPM on MNIST or an image folder (Ho et al. 2020, Algorithm 1)');
  addTrainOptions(cmd); // src/cli/train-options.ts: the flags of TRAIN_OPTIONS, grouped, and the examples
  cmd.action(async (opts: Record<string, string | boolean | number | undefined>) => {
    const held: Held = { onSignal: quitAtOnce };
    const onSigint = () => held.onSignal('SIGINT');
    const onSigterm = () => held.onSignal('SIGTERM');
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);
    try {
      await runTrain(opts, held);
    } finally {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
      await held.lock?.release();
    }
  });
  return cmd;
}

/** A flag that must be a positive integer when given. */
function positiveInt(opts: Record<string, unknown>, key: string, flag: string): number | undefined {
  const v = opts[key];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new UserError(`${flag}: expected a positive integer, got '${String(v)}'`);
  return n;
}

/** commander stores --batch-size as batchSize; map back to flag names. */
function flagValues(opts: Record<string, unknown>): Record<string, string | boolean | undefined> {
  const out: Record<string, string | boolean | undefined> = {};
  for (const def of TRAIN_OPTIONS) {
    const key = def.flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const v = opts[key];
    if (v !== undefined) out[def.flag] = typeof v === 'boolean' ? v : String(v);
  }
  return out;
}

async function baseConfig(spec: string): Promise<TrainConfig> {
  if (Object.hasOwn(UNET_CONFIGS, spec)) return defaultTrainConfig(spec);
  if (spec.endsWith('.json')) {
    let text: string;
    try {
      text = await readFile(spec, 'utf8');
    } catch {
      throw new UserError(`--config: cannot read ${spec}`);
    }
    try {
      return validateTrainConfig(JSON.parse(text));
    } catch (e) {
      throw new UserError(`--config ${spec}: ${(e as Error).message}`);
    }
  }
  throw new UserError(`--config: unknown preset '${spec}' (known: ${Object.keys(UNET_CONFIGS).join(', ')}; or pass a .json file)`);
}

/** The training images for `config` (a folder's summary line and notes on stderr); see train-data.ts. */
export async function loadDataset(config: TrainConfig, folder?: PlannedFolder): Promise<Dataset> {
  return loadTrainData(config, folder);
}

/**
 * Before any work: the model must train at the batch size in this machine's memory, and the periodic sample grid
 * (sampleCount images in one call) must fit too.
 */
function checkTrainSize(config: TrainConfig, where: string): void {
  const { model, run } = config;
  checkModelFits(model, 'train', config.data.batchSize, where);
  if (run.sampleEvery > 0) {
    checkModelFits(model, 'sample', run.sampleCount, `${where} (--sample-count ${run.sampleCount})`);
    const side = (k: number) => k * (model.imageSize + 2) + 2;
    const cols = Math.ceil(Math.sqrt(run.sampleCount));
    const grid = side(cols) * side(Math.ceil(run.sampleCount / cols));
    if (grid > MAX_GRID_PIXELS) {
      throw new UserError(`--sample-count ${run.sampleCount}: the sample grid would have ${grid.toLocaleString('en-US')} pixels, over the ${MAX_GRID_PIXELS.toLocaleString('en-US')} limit (MAX_GRID_PIXELS)`);
    }
  }
}

/** With --class-cond, the config with the data's classes (see withClasses); one line naming the problem otherwise. */
function classesFromData(config: TrainConfig, dataset: Dataset): TrainConfig {
  try {
    return withClasses(config, dataset.classNames);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
}

function lrDecayNote({ optim: o }: TrainConfig): string {
  if (o.decay === 'none' || o.decaySteps === 0) return '';
  return ` (${o.decay} decay to ${o.decayTo} over steps ${o.decayStart}..${o.decayStart + o.decaySteps})`;
}

/** What runTrain holds until the command ends: the run directory's lock, and the signal handler of the moment. */
interface Held {
  lock?: RunLock;
  onSignal: (sig: 'SIGINT' | 'SIGTERM') => void;
}

/** A signal with nothing to save (start-up, shutdown): exit as a shell reports it; the lock's exit hook removes the lock. */
function quitAtOnce(sig: 'SIGINT' | 'SIGTERM'): never {
  process.exit(sig === 'SIGINT' ? 130 : 143);
}

async function runTrain(opts: Record<string, string | boolean | number | undefined>, held: Held): Promise<void> {
  const flags = flagValues(opts);
  const walkLimits = { maxDepth: positiveInt(opts, 'folderMaxDepth', '--folder-max-depth'), maxEntries: positiveInt(opts, 'folderMaxEntries', '--folder-max-entries') };
  if (opts.resume && opts.out === undefined && flags.data === undefined) {
    throw new UserError('--resume needs --out <dir> (or the --data of a run in its default directory, runs/<name of the folder>)');
  }
  // the input paths' kinds before anything is touched (flag values were checked as they were parsed)
  await checkTrainInputs(flags, opts.config === undefined ? undefined : String(opts.config));
  // the default preset: the reference mnist-28 for MNIST, rgb-32 (and its recipe) for a folder of one's own images
  const configName = opts.config !== undefined ? String(opts.config) : flags.data !== undefined && flags.data !== 'mnist' ? 'rgb-32' : 'mnist-28';
  // the default run directory is named after the data: --data, or a config file's data.source
  const dataName = opts.out !== undefined ? undefined : ((flags.data as string | undefined) ?? (opts.resume ? 'mnist' : (await baseConfig(configName)).data.source));
  const out = opts.out !== undefined ? String(opts.out) : defaultOut(dataName);
  const outNote = opts.out === undefined ? ` (the default --out for --data ${dataName})` : '';
  let config: TrainConfig;
  const ckptDir = path.join(out, 'checkpoint');
  // The run directory first: an existing writable directory, or one that can be created.
  await checkOutputDir('--out', out);
  // One writer per run directory (src/io/run-lock.ts): the lock comes before anything in it is read (another trainer
  // could be swapping its checkpoint) and is held until the command ends (trainCommand's action releases it). The
  // directory is made for it; a failed start gives the lock back and removes the directories made here, leaving
  // nothing behind. A signal during the start-up has nothing to save: it exits at once (quitAtOnce; the lock's exit
  // hook then removes the lock and those directories); the training's handler below replaces that.
  const created = await makeDirs('--out', out);
  try {
    held.lock = await acquireRunLock(out, { command: 'ddpm train', createdDirs: created });
  } catch (e) {
    await removeDirs(created);
    throw outputError('--out', out, e);
  }
  const lock = held.lock;
  for (const note of lock.notes) process.stderr.write(`note: ${note}\n`);
  // Repair an interrupted checkpoint write before deciding (a kill between its two renames leaves checkpoint.old and
  // a complete checkpoint.new but no checkpoint/): deciding on checkpoint/config.json would start over and overwrite it.
  const resuming = Boolean(opts.resume) && (await recoverCheckpoint(ckptDir));
  // A new run never replaces another run's checkpoint: its first write would destroy the saved state.
  if (!opts.resume && (await resolveCheckpointDir(ckptDir)) !== null) {
    throw new UserError(`--out ${out}${outNote} already holds a checkpoint (${ckptDir}); pass --resume to continue that run, or --out <dir> for a new one`);
  }
  let folder: PlannedFolder | undefined;
  let batchIsDefault = false;
  try {
    let base = resuming ? await readConfig(ckptDir) : await baseConfig(configName);
    // a folder's headers: a new run on a built-in preset takes the images' size and channels (the flags still win)
    const preset = Object.hasOwn(UNET_CONFIGS, configName);
    ({ base, folder, batchIsDefault } = await planFolderData(base, flags, { resuming, preset, configName, limits: walkLimits }));
    config = applyOptions(base, flags);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError((e as Error).message);
  }
  if (opts.resume && !resuming) process.stderr.write(`note: no checkpoint in ${ckptDir}; starting a new run\n`);
  if (config.run.steps === 0 && config.run.minutes === 0) {
    process.stderr.write(`note: no --steps or --minutes: training until Ctrl-C, which writes a checkpoint${config.run.sampleEvery > 0 ? ' and a sample grid' : ''} before it exits\n`);
  }
  checkTrainSize(config, resuming ? path.join(ckptDir, 'config.json') : 'config');
  await ensureExecutionProvider(opts.ep as string | undefined);
  const dataset = await loadDataset(config, folder);
  config = classesFromData(config, dataset);
  config = fitBatchToData(config, dataset.n, batchIsDefault);
  const logFile = path.join(out, 'log.jsonl');
  const { run } = config;
  const B = config.data.batchSize;
  // The bar (a TTY only): by steps, or by time for a --minutes run; its "left" is secondsLeft's.
  const barBy = !process.stderr.isTTY ? null : run.minutes > 0 ? 'time' : run.steps > 0 ? 'steps' : null;
  const bar = new cliProgress.SingleBar(
    { format: ' {bar} {percentage}% | step {step} | loss {loss} | {ips} img/s | {left} left', hideCursor: true, stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  const barTotal = barBy === 'time' ? Math.round(run.minutes * 60) : run.steps;
  let lastLoss = NaN;
  let lastIps = NaN;
  const barState = () => {
    const { step, elapsedSec } = trainer.state;
    const payload = {
      step: run.steps > 0 ? `${step}/${run.steps}` : String(step),
      loss: Number.isFinite(lastLoss) ? lastLoss.toFixed(4) : '-',
      ips: Number.isFinite(lastIps) ? lastIps.toFixed(1) : '-',
      left: formatDuration(secondsLeft(config, step, elapsedSec, lastIps)),
    };
    return { value: barBy === 'time' ? Math.min(barTotal, Math.round(elapsedSec)) : step, payload };
  };
  let barOn = false;
  const say = (line: string) => {
    if (barOn) bar.stop();
    process.stdout.write(line + '\n');
    if (barOn) {
      const { value, payload } = barState();
      bar.start(barTotal, value, payload);
    }
  };
  const trainer = await Trainer.create(ort, config, out, dataset, {
    ...nodeRuntime({ threads: opts.threads as number | undefined, ep: opts.ep as string | undefined }),
    resume: resuming,
    lock,
    events: {
      onStep: (_step, loss) => {
        lastLoss = loss;
        if (barOn) {
          const { value, payload } = barState();
          bar.update(value, payload);
        }
      },
      onLog: (l: StepLog) => {
        lastIps = l.imgPerSec;
        appendFileSync(logFile, JSON.stringify({ ...l, time: new Date().toISOString() }) + '\n');
        const left = secondsLeft(config, l.step, l.elapsedSec, l.imgPerSec);
        say(
          `step ${l.step}${run.steps > 0 ? `/${run.steps}` : ''}  loss ${l.loss.toFixed(5)}  mse ${l.mse.toFixed(5)}${l.vb !== undefined ? `  vb ${l.vb.toFixed(4)}` : ''}` +
            `  |g| ${l.gradNorm.toFixed(3)}  lr ${l.lr.toExponential(2)}  ${l.imgPerSec.toFixed(1)} img/s  elapsed ${formatDuration(l.elapsedSec)}` +
            (Number.isFinite(left) ? `  left ${formatDuration(left)}` : ''),
        );
      },
      onSample: (file) => say(`samples: ${file}`),
      onCheckpoint: (dir, step) => say(`checkpoint: ${dir} (step ${step})`),
    },
  });
  // The first SIGINT/SIGTERM stops after the current step; the run then writes its checkpoint and sample grid and
  // exits 130/143. A second one quits at once (the last checkpoint on disk is complete: writes are atomic). Handled
  // from before the start line, so a signal sent as soon as it shows is never the default (a kill without saving).
  let signal: 'SIGINT' | 'SIGTERM' | null = null;
  const onSignal = (sig: 'SIGINT' | 'SIGTERM') => {
    if (signal !== null) process.exit(sig === 'SIGINT' ? 130 : 143);
    signal = sig;
    if (barOn) bar.stop();
    barOn = false;
    process.stderr.write(`\n${sig}: finishing this step, then writing a checkpoint${run.sampleEvery > 0 ? ' and a sample grid' : ''} (${sig === 'SIGINT' ? 'Ctrl-C' : 'the signal'} again to quit at once)\n`);
    trainer.requestStop();
  };
  held.onSignal = onSignal;
  process.stdout.write(
    `${resuming ? 'resuming' : 'training'} ${config.preset} (${describeUNet(config.model)}) on ${config.data.source} (${dataset.n.toLocaleString('en-US')} images) ` +
      `from step ${trainer.state.step}${!resuming && config.run.initFrom ? ` with the weights of ${config.run.initFrom}` : ''}; ` +
      `batch ${B}, ${config.diffusion.meanType}/${config.diffusion.loss}${config.diffusion.minSnrGamma > 0 ? ` (min-SNR-γ ${config.diffusion.minSnrGamma})` : ''}, ${config.diffusion.schedule.kind} T=${config.diffusion.schedule.T}, lr ${config.optim.lr}${lrDecayNote(config)}${limitsNote(config)}; out ${out}\n`,
  );
  if (config.data.classCond) {
    const names = config.data.classNames;
    process.stdout.write(`class-conditional: ${names.length} classes (${names.length > 12 ? `${names.slice(0, 12).join(', ')}, ...` : names.join(', ')}), label dropout p_uncond ${config.data.pUncond}\n`);
  }
  if (barBy) {
    const { value, payload } = barState();
    bar.start(barTotal, value, payload);
    barOn = true;
  }
  try {
    const from = { step: trainer.state.step, sec: trainer.state.elapsedSec };
    const res = await trainer.train();
    if (barOn) bar.stop();
    barOn = false;
    const why = signal ?? (res.stopped === 'budget' ? `--minutes ${run.minutes} reached` : res.stopped === 'done' ? `--steps ${run.steps} reached` : 'stopped');
    process.stdout.write(`done: ${res.steps} steps (${why}${speedNote(res.steps - from.step, trainer.state.elapsedSec - from.sec, B)}); checkpoint in ${ckptDir}\nnext: ${sampleCommandFor(out, config.data.classCond)}\n`);
  } catch (e) {
    if (barOn) bar.stop();
    barOn = false;
    // a run directory this process made and nothing was written to is removed again by lock.release()
    throw outputError('--out', out, e); // a full disk or a directory gone read-only, as one line naming the run
  } finally {
    held.onSignal = quitAtOnce;
    await trainer.release();
  }
  if (signal !== null) throw new Interrupted(signal);
}

/**
 * Seconds until the run stops: the rest of the --minutes budget, or the remaining --steps at `imgPerSec`,
 * whichever comes first; Infinity for a run without either (it stops at Ctrl-C).
 */
export function secondsLeft(config: TrainConfig, step: number, elapsedSec: number, imgPerSec: number): number {
  const { run } = config;
  const byTime = run.minutes > 0 ? Math.max(0, run.minutes * 60 - elapsedSec) : Infinity;
  const bySteps = run.steps > 0 && imgPerSec > 0 ? (Math.max(0, run.steps - step) * config.data.batchSize) / imgPerSec : Infinity;
  return Math.min(byTime, bySteps);
}

/**
 * What this machine gave, for the last line: `; 4,245 steps in 15m00s here, 283 steps/min at batch 32` (this
 * process's steps and training time, a resumed run's earlier ones left out), so that a user can size a run by minutes.
 */
export function speedNote(steps: number, seconds: number, batch: number): string {
  if (steps <= 0 || !(seconds > 0)) return '';
  const perMin = (steps / seconds) * 60;
  return `; ${steps.toLocaleString('en-US')} step${steps === 1 ? '' : 's'} in ${formatDuration(seconds)} here, ${perMin >= 100 ? Math.round(perMin).toLocaleString('en-US') : perMin.toPrecision(3)} steps/min at batch ${batch}`;
}

/** How the run stops, for the start line. */
function limitsNote({ run }: TrainConfig): string {
  const limits = [run.steps > 0 ? `${run.steps} steps` : '', run.minutes > 0 ? `${run.minutes} min` : ''].filter(Boolean);
  return limits.length > 0 ? `; until ${limits.join(' or ')}` : '; until Ctrl-C';
}

/** `ddpm train`: flags come from the typed config (src/train/config.ts), the work from the Trainer. */
import { appendFileSync } from 'node:fs';
import { access, readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import cliProgress from 'cli-progress';
import { Command, Option } from 'commander';
import { loadImageFolder, imageFolderDataset } from '../data/folder.ts';
import { labelledFolderDataset } from '../data/folder-classes.ts';
import type { Dataset } from '../data/loader.ts';
import { mnistDataset } from '../data/mnist.ts';
import { resolveCheckpointDir } from '../io/atomic.ts';
import { ensureExecutionProvider, nodeRuntime, ort } from '../node/ort.ts';
import { readConfig, recoverCheckpoint } from '../train/checkpoint.ts';
import { TRAIN_OPTIONS, applyOptions, defaultTrainConfig, validateTrainConfig, withClasses, type TrainConfig } from '../train/config.ts';
import { Trainer, type StepLog } from '../train/trainer.ts';
import { UNET_CONFIGS } from '../models/unet.ts';
import { MAX_GRID_PIXELS } from '../limits.ts';
import { UserError, addRuntimeOptions, checkModelFits, formatDuration } from './common.ts';
import { checkOutputDir, makeDirs, outputError, removeDirs } from './output.ts';

export function trainCommand(): Command {
  const d = defaultTrainConfig();
  const cmd = new Command('train')
    .description('train a DDPM on MNIST or an image folder (Ho et al. 2020, Algorithm 1)')
    .requiredOption('--out <dir>', 'run directory (checkpoint/, samples/, log.jsonl)')
    .option('--config <name|file>', `model preset (${Object.keys(UNET_CONFIGS).join(', ')}) or a config JSON file`, 'mnist-28')
    .option('--resume', 'continue from <out>/checkpoint (its config is kept; run flags and the learning-rate schedule may change)');
  for (const def of TRAIN_OPTIONS) {
    const dflt = def.path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], d);
    const label = def.kind === 'boolean' ? `--${def.flag} [bool]` : `--${def.flag} <value>`;
    const opt = new Option(label, `${def.help} (default: ${JSON.stringify(dflt)})`);
    if (def.choices) opt.choices(def.choices as string[]);
    cmd.addOption(opt);
  }
  addRuntimeOptions(cmd);
  cmd.action(async (opts: Record<string, string | boolean | number | undefined>) => {
    await runTrain(opts);
  });
  return cmd;
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

export async function loadDataset(config: TrainConfig): Promise<Dataset> {
  const src = config.data.source;
  if (src === 'mnist') {
    if (config.model.imageSize !== 28 || config.model.inChannels !== 1) {
      throw new UserError(`MNIST is 1x28x28 but the model is ${config.model.inChannels}x${config.model.imageSize}x${config.model.imageSize}`);
    }
    return mnistDataset('train');
  }
  try {
    await access(src);
  } catch {
    throw new UserError(`--data: '${src}' is neither 'mnist' nor an existing folder`);
  }
  const data = await loadImageFolder(src, { size: config.model.imageSize, channels: config.model.inChannels as 1 | 3 });
  return config.data.classCond ? labelledFolderDataset(src, data) : imageFolderDataset(data);
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

async function runTrain(opts: Record<string, string | boolean | number | undefined>): Promise<void> {
  const out = String(opts.out);
  const flags = flagValues(opts);
  let config: TrainConfig;
  const ckptDir = path.join(out, 'checkpoint');
  // The run directory first: an existing writable directory, or one that can be created (it is created only once
  // the start-up has succeeded, so a failed start leaves nothing behind).
  await checkOutputDir('--out', out);
  // Repair an interrupted checkpoint write before deciding (a kill between its two renames leaves checkpoint.old and
  // a complete checkpoint.new but no checkpoint/): deciding on checkpoint/config.json would start over and overwrite it.
  const resuming = Boolean(opts.resume) && (await recoverCheckpoint(ckptDir));
  // A new run never replaces another run's checkpoint: its first write would destroy the saved state.
  if (!opts.resume && (await resolveCheckpointDir(ckptDir)) !== null) {
    throw new UserError(`--out ${out} already holds a checkpoint (${ckptDir}); pass --resume to continue that run, or choose another --out`);
  }
  try {
    config = applyOptions(resuming ? await readConfig(ckptDir) : await baseConfig(String(opts.config)), flags);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError((e as Error).message);
  }
  if (opts.resume && !resuming) process.stderr.write(`note: no checkpoint in ${ckptDir}; starting a new run\n`);
  checkTrainSize(config, resuming ? path.join(ckptDir, 'config.json') : 'config');
  await ensureExecutionProvider(opts.ep as string | undefined);
  const dataset = await loadDataset(config);
  config = classesFromData(config, dataset);
  const logFile = path.join(out, 'log.jsonl');
  const { run } = config;
  const tty = process.stderr.isTTY;
  const bar = new cliProgress.SingleBar(
    {
      format: ' {bar} {percentage}% | step {value}/{total} | loss {loss} | {ips} img/s | ETA {eta_formatted}',
      hideCursor: true,
      etaBuffer: 200,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  const total = run.steps > 0 ? run.steps : 0;
  let lastLoss = NaN;
  let lastIps = 0;
  const say = (line: string) => {
    if (tty && total > 0) bar.stop();
    process.stdout.write(line + '\n');
    if (tty && total > 0) bar.start(total, trainer.state.step, { loss: lastLoss.toFixed(4), ips: lastIps.toFixed(1) });
  };
  const trainer = await Trainer.create(ort, config, out, dataset, {
    ...nodeRuntime({ threads: opts.threads as number | undefined, ep: opts.ep as string | undefined }),
    resume: resuming,
    events: {
      onStep: (step, loss) => {
        lastLoss = loss;
        if (tty && total > 0) bar.update(step, { loss: loss.toFixed(4), ips: lastIps.toFixed(1) });
      },
      onLog: (l: StepLog) => {
        lastIps = l.imgPerSec;
        appendFileSync(logFile, JSON.stringify({ ...l, time: new Date().toISOString() }) + '\n');
        const eta = total > 0 ? ((total - l.step) * config.data.batchSize) / l.imgPerSec : run.minutes > 0 ? run.minutes * 60 - l.elapsedSec : NaN;
        say(
          `step ${l.step}${total ? `/${total}` : ''}  loss ${l.loss.toFixed(5)}  mse ${l.mse.toFixed(5)}${l.vb !== undefined ? `  vb ${l.vb.toFixed(4)}` : ''}` +
            `  |g| ${l.gradNorm.toFixed(3)}  lr ${l.lr.toExponential(2)}  ${l.imgPerSec.toFixed(1)} img/s  elapsed ${formatDuration(l.elapsedSec)}  ETA ${formatDuration(eta)}`,
        );
      },
      onSample: (file) => say(`samples: ${file}`),
      onCheckpoint: (dir, step) => say(`checkpoint: ${dir} (step ${step})`),
    },
  });
  let created: string[];
  try {
    created = await makeDirs('--out', out);
  } catch (e) {
    await trainer.release();
    throw e;
  }
  process.stdout.write(
    `${resuming ? 'resuming' : 'training'} ${config.preset} on ${config.data.source} (${dataset.n} images) from step ${trainer.state.step}${!resuming && config.run.initFrom ? ` with the weights of ${config.run.initFrom}` : ''}; ` +
      `batch ${config.data.batchSize}, ${config.diffusion.meanType}/${config.diffusion.loss}, ${config.diffusion.schedule.kind} T=${config.diffusion.schedule.T}, lr ${config.optim.lr}${lrDecayNote(config)}; out ${out}\n`,
  );
  if (config.data.classCond) {
    const names = config.data.classNames;
    process.stdout.write(`class-conditional: ${names.length} classes (${names.length > 12 ? `${names.slice(0, 12).join(', ')}, ...` : names.join(', ')}), label dropout p_uncond ${config.data.pUncond}\n`);
  }
  if (tty && total > 0) bar.start(total, trainer.state.step, { loss: '-', ips: '-' });
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write('\ninterrupt: finishing this step and writing a checkpoint (Ctrl-C again to quit at once)\n');
      trainer.requestStop();
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  try {
    const res = await trainer.train();
    if (tty && total > 0) bar.stop();
    process.stdout.write(`done: ${res.steps} steps (${res.stopped}); checkpoint in ${ckptDir}\n`);
  } catch (e) {
    if (tty && total > 0) bar.stop();
    // a run directory this process made and nothing was written to is removed again
    if (created.length > 0 && (await readdir(out).catch(() => ['?'])).length === 0) await removeDirs(created);
    throw outputError('--out', out, e); // a full disk or a directory gone read-only, as one line naming the run
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    await trainer.release();
  }
}

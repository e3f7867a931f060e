/**
 * `ddpm eval`: NLL in bits/dim on MNIST test images and sample quality with FID-LeNet (plus class
 * histogram and confidence), for a trained model or for a folder of images made elsewhere. The work
 * lives in src/eval (nll.ts, score.ts) and the pipeline (src/pipeline/).
 */
import cliProgress from 'cli-progress';
import { Command, Option } from 'commander';
import { ImageFolderError, loadImageFolder } from '../data/folder.ts';
import { uint8Dataset } from '../data/loader.ts';
import { mnistImages } from '../data/mnist.ts';
import type { VarType } from '../diffusion/batch.ts';
import type { Sampler } from '../diffusion/samplers.ts';
import type { ExecutionProvider, RuntimeOptions } from '../engine/runtime.ts';
import { GaussianDiffusion } from '../diffusion/gaussian-diffusion.ts';
import { ClassifierDirError, DEFAULT_CLASSIFIER_DIR, loadClassifierDir, type ClassifierDir } from '../eval/classifier-dir.ts';
import { quantizeLikePng } from '../eval/fid.ts';
import { evaluateNll } from '../eval/nll.ts';
import { scoreSamples } from '../eval/score.ts';
import { ensureExecutionProvider, nodeRuntime, ort } from '../node/ort.ts';
import { SHIPPED_MODEL_NAMES, describeModel, loadModel } from '../pipeline/load.ts';
import { DDPMPipeline } from '../pipeline/node.ts';
import { pipelineSampler, type PipelineGenerateOptions } from '../pipeline/pipeline.ts';
import { Rng } from '../rng.ts';
import { DEFAULT_DDIM_ETA, SAMPLER_KINDS, type SamplerKind } from '../sample/generate.ts';
import { DEFAULT_GUIDANCE_SCALE } from '../diffusion/guidance.ts';
import { MAX_BATCH_SIZE, MAX_GUIDANCE_SCALE, MAX_SAMPLES, MAX_SEED, MAX_T } from '../limits.ts';
import { UserError, addExamples, addRuntimeOptions, checkModelFits, checkOutputMemory, formatDuration, parseFloatArg, parseIntArg } from './common.ts';

interface EvalOptions {
  checkpoint?: string;
  nll?: number;
  fid?: number;
  samples?: string;
  sampler: SamplerKind;
  steps?: number;
  eta?: number;
  seed: number;
  batchSize: number;
  varType?: 'fixedLarge' | 'fixedSmall';
  classifier?: string;
  guidance?: number;
  json?: boolean;
  threads?: number;
  ep?: string;
}

export function evalCommand(): Command {
  const cmd = new Command('eval')
    .description('evaluate a model: NLL bound in bits/dim on MNIST test images, FID-LeNet / class histogram of generated (or given) samples')
    .option('--checkpoint <path>', `the model: a checkpoint or run directory, a checkpoint file (.safetensors, as the page downloads), a .onnx from \`ddpm export\`, or a shipped model (${SHIPPED_MODEL_NAMES.join(', ')}) (default: mnist-28; with --guidance, mnist-28-cond)`)
    .option('--nll <n>', 'NLL bound (all T steps, Ho et al. eq. 5) on the first n MNIST test images; costs T model calls per batch', parseIntArg('--nll', 1))
    .option('--fid <n>', 'generate n samples and score them against the MNIST test set with FID-LeNet', parseIntArg('--fid', 2, MAX_SAMPLES))
    .option('--samples <dir>', 'score the images (PNG, ...) in a folder instead: grayscale, resized to 28x28, scaled like MNIST')
    .addOption(new Option('--sampler <name>', 'sampler for --fid: ddpm (ancestral), ddim or dpm++ (DPM-Solver++(2M))').choices(SAMPLER_KINDS).default('ddim'))
    .option('--steps <n>', 'sampling steps for --fid, respaced from T (default: 50 for ddim, 20 for dpm++, T (1000) for ddpm)', parseIntArg('--steps', 2, MAX_T))
    .option('--eta <x>', 'DDIM η for --fid (default: 1)', parseFloatArg('--eta', 0, 1))
    .option('--seed <n>', 'random seed of the samples and of the NLL noise', parseIntArg('--seed', 0, MAX_SEED), 0)
    .option('--batch-size <n>', 'images per model call', parseIntArg('--batch-size', 1, MAX_BATCH_SIZE), 256)
    .addOption(
      new Option('--var-type <name>', "reverse-process variance for the NLL and DDPM sampling (default: the model's, fixedLarge for the baseline)").choices([
        'fixedLarge',
        'fixedSmall',
      ]),
    )
    .option('--classifier <dir>', 'the FID classifier directory (default: the shipped models/lenet-mnist)')
    .option(
      '--guidance <x>',
      `class-conditional models: --fid draws image i as class i mod numClasses at this classifier-free guidance scale (0 unconditional, 1 conditional; default: ${DEFAULT_GUIDANCE_SCALE}) and reports the class accuracy`,
      parseFloatArg('--guidance', 0, MAX_GUIDANCE_SCALE),
    )
    .option('--json', 'print the results as one JSON object on stdout');
  addRuntimeOptions(cmd);
  addExamples(
    cmd,
    [
      'ddpm eval --fid 1000 --steps 50',
      'ddpm eval --checkpoint mnist-28-cond --fid 1000 --guidance 2 --json',
      'ddpm eval --checkpoint runs/mnist --nll 100 --var-type fixedSmall',
      'ddpm eval --samples my-samples',
    ],
    `FID-LeNet uses the 128-d penultimate features of the shipped MNIST classifier (models/lenet-mnist), so it is
comparable only with other FID-LeNet numbers at the same number of samples, never with Inception FIDs.
For a class-conditional MNIST model, --fid also reports the class accuracy: the fraction of samples that
the classifier assigns to the class they were generated as (--nll scores its unconditional model, label
"no class").`,
  );
  cmd.action(async (opts: EvalOptions) => {
    await runEval(opts);
  });
  return cmd;
}

/** Progress on stderr (also with --json, whose stdout is the report): a bar on a terminal, else a line every 10%. */
function progress(label: string, total: number): { update: (done: number) => void; stop: () => void } {
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      { format: ` ${label} {bar} {percentage}% | {value}/{total} | ETA {eta_formatted}`, hideCursor: true, stream: process.stderr },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0);
    return { update: (d) => bar.update(d), stop: () => bar.stop() };
  }
  const t0 = performance.now();
  let next = 0.1;
  return {
    update: (d) => {
      if (d / total + 1e-9 < next) return;
      while (next <= d / total + 1e-9) next += 0.1;
      const sec = (performance.now() - t0) / 1000;
      process.stderr.write(`${label}: ${d}/${total} (${Math.round((100 * d) / total)}%), ${formatDuration(sec)} elapsed, ETA ${formatDuration((sec * (total - d)) / d)}\n`);
    },
    stop: () => {},
  };
}

const round = (x: number, digits = 6) => (Number.isFinite(x) ? Number(x.toPrecision(digits)) : null);

type Log = (line: string) => void;
type Report = Record<string, unknown>;

async function runEval(opts: EvalOptions): Promise<void> {
  // 1. options that need nothing loaded
  if (opts.nll === undefined && opts.fid === undefined && opts.samples === undefined) {
    throw new UserError('nothing to evaluate: pass --nll <n>, --fid <n> and/or --samples <folder>');
  }
  if (opts.fid !== undefined && opts.samples !== undefined) throw new UserError('--fid generates samples and --samples scores given ones: pick one');
  if (opts.nll !== undefined && opts.nll > 10000) throw new UserError(`--nll: MNIST has 10000 test images, got ${opts.nll}`);
  if (opts.checkpoint !== undefined && opts.nll === undefined && opts.fid === undefined) {
    throw new UserError('--checkpoint is only used with --nll or --fid (--samples scores the images alone)');
  }
  if (opts.guidance !== undefined && opts.fid === undefined) throw new UserError('--guidance applies to --fid (the generated samples) only');
  const runtime: RuntimeOptions = nodeRuntime(opts);
  await ensureExecutionProvider(opts.ep);
  const log: Log = (line) => {
    // with --json, stdout carries only the JSON; the human lines go to stderr
    (opts.json ? process.stderr : process.stdout).write(line + '\n');
  };
  const report: Report = { date: new Date().toISOString(), threads: runtime.threads, ep: runtime.executionProvider };

  // 2. the images of --samples (read first: cheap, and the likeliest bad input)
  let scored: Scored | undefined;
  if (opts.samples !== undefined) scored = await readSamples(opts.samples, log);

  // 3. the classifier (for --fid / --samples) and the model (for --nll / --fid)
  let classifier: ClassifierDir | undefined;
  if (opts.fid !== undefined || opts.samples !== undefined) {
    const dir = opts.classifier ?? DEFAULT_CLASSIFIER_DIR;
    try {
      classifier = await loadClassifierDir(dir);
    } catch (e) {
      throw new UserError(e instanceof ClassifierDirError ? e.message : `--classifier ${dir}: ${(e as Error).message}`);
    }
    report.classifier = { dir, testAccuracy: classifier.info.testAccuracy, referenceFid: classifier.info.referenceFid ?? null };
  }
  if (opts.nll !== undefined || opts.fid !== undefined) {
    // --guidance without --checkpoint: the shipped class-conditional model
    const model = await loadModel(opts.checkpoint, { classConditional: opts.guidance !== undefined });
    const { unet, diffusion } = model;
    if (unet.inChannels !== 1 || unet.imageSize !== 28) {
      throw new UserError(`${model.file}: the model makes ${unet.inChannels}x${unet.imageSize}x${unet.imageSize} images; NLL on MNIST and FID-LeNet need 1x28x28`);
    }
    if (opts.guidance !== undefined && unet.numClasses === 0) {
      throw new UserError(`--guidance: ${model.file} is an unconditional model (it was not trained with --class-cond)`);
    }
    const varType: VarType = opts.varType ?? diffusion.varType;
    if ((diffusion.varType === 'learnedRange') !== (varType === 'learnedRange')) {
      throw new UserError(`--var-type ${varType}: the model was trained with ${diffusion.varType}; a learned variance cannot be swapped for a fixed one or back`);
    }
    // before any work: the model at the batch size and the generated images must fit this machine
    const n = Math.max(opts.nll ?? 0, opts.fid ?? 0);
    checkModelFits(unet, 'sample', (unet.numClasses > 0 ? 2 : 1) * Math.min(opts.batchSize, n), model.file); // guidance doubles the batch
    if (opts.fid !== undefined) checkOutputMemory(2 * 4 * 784 * opts.fid, `--fid ${opts.fid}: the samples and their copy for the classifier`);
    report.model = { file: model.file, step: model.step ?? null, description: describeModel(model) };
    log(`model: ${model.file} (${describeModel(model)})`);
    const pipe = await DDPMPipeline.fromLoaded(model, { threads: opts.threads, executionProvider: opts.ep as ExecutionProvider | undefined });
    try {
      // 4. NLL on the first n test images, 5. samples for FID
      if (opts.nll !== undefined) report.nll = await runNll(pipe, varType, opts.nll, opts, log);
      if (opts.fid !== undefined) scored = await runSampling(pipe, opts.fid, opts, log, model.classNames, classifier!);
    } finally {
      await pipe.release();
    }
  }

  // 6. FID-LeNet against the MNIST test statistics, class histogram, confidence
  if (scored && classifier) report.fid = await score(scored, classifier, runtime, log);
  if (opts.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
}

/** Images to score, (n, 1, 28, 28) in [-1, 1], and where they came from; `labels`: the class each was generated as. */
interface Scored {
  images: Float32Array;
  source: Report;
  labels?: Int32Array;
}

async function runNll(pipe: DDPMPipeline, varType: VarType, n: number, opts: EvalOptions, log: Log): Promise<Report> {
  const diffusion = GaussianDiffusion.fromConfig(pipe.diffusion.schedule);
  const T = diffusion.numTimesteps;
  const x0 = mnistImages('test', 0, n);
  const batches = Math.ceil(n / opts.batchSize);
  const uncond = pipe.unet.numClasses > 0 ? ' (the class-conditional model with label "no class": its unconditional likelihood)' : '';
  log(`NLL${uncond}: ${n} MNIST test image(s), T = ${T}, ${varType}, ${batches} batch(es) of <= ${Math.min(n, opts.batchSize)}: ${batches * T} model calls`);
  const bar = progress('nll', batches * T);
  const t0 = performance.now();
  let res;
  try {
    res = await evaluateNll(diffusion, pipe.denoiser.predict, { data: x0, shape: [n, 1, 28, 28] }, {
      meanType: pipe.diffusion.meanType,
      varType,
      batchSize: opts.batchSize,
      rng: new Rng(opts.seed),
      onProgress: bar.update,
    });
  } finally {
    bar.stop();
  }
  const sec = (performance.now() - t0) / 1000;
  log(
    `NLL bound: ${res.meanBpd.toFixed(4)} ± ${Number.isFinite(res.stderrBpd) ? res.stderrBpd.toFixed(4) : 'n/a'} bits/dim (mean ± s.e., ${n} image(s), ${varType}) ` +
      `= prior ${res.priorBpd.toFixed(4)} + L_1..L_${T - 1} ${res.vbBpd.toFixed(4)} + decoder L_0 ${res.decoderBpd.toFixed(4)}; ` +
      `${formatDuration(sec)} (${((n * T) / sec).toFixed(1)} img·steps/s)`,
  );
  return {
    n, T, varType, seed: opts.seed, batchSize: opts.batchSize,
    meanBpd: round(res.meanBpd), stderrBpd: round(res.stderrBpd),
    priorBpd: round(res.priorBpd), decoderBpd: round(res.decoderBpd), vbBpd: round(res.vbBpd),
    seconds: round(sec, 4), modelCallsPerSec: round(res.modelCalls / sec, 4), imgStepsPerSec: round((n * T) / sec, 4),
  };
}

/**
 * The labels a class-conditional model's samples are drawn with (image i of class i mod numClasses), when its
 * classes are the classifier's (MNIST digits "0".."9", in order) so that class accuracy means something; otherwise
 * undefined (and a note).
 */
function evalLabels(pipe: DDPMPipeline, n: number, classifier: ClassifierDir, classNames: string[] | undefined, log: Log): Int32Array | undefined {
  const K = pipe.unet.numClasses;
  if (K === 0) return undefined;
  const digits = Array.from({ length: classifier.info.model.numClasses }, (_, i) => String(i));
  if (JSON.stringify(classNames ?? pipe.classNames) !== JSON.stringify(digits)) {
    log(`note: the model's ${K} classes are not the classifier's digits 0..${digits.length - 1}; no class accuracy`);
    return undefined;
  }
  return Int32Array.from({ length: n }, (_, i) => i % K);
}

async function runSampling(pipe: DDPMPipeline, n: number, opts: EvalOptions, log: Log, classNames: string[] | undefined, classifier: ClassifierDir): Promise<Scored> {
  const varType = opts.varType ?? pipe.diffusion.varType;
  const labels = evalLabels(pipe, n, classifier, classNames, log);
  const guidance = pipe.unet.numClasses > 0 ? (opts.guidance ?? DEFAULT_GUIDANCE_SCALE) : undefined;
  const K = pipe.unet.numClasses;
  const request: PipelineGenerateOptions = {
    n, sampler: opts.sampler, steps: opts.steps, eta: opts.eta, varType: opts.varType, seed: opts.seed, batchSize: opts.batchSize,
    // a conditional model's samples are always drawn per class (i mod K), so that the guidance scale means the same with or without accuracy
    ...(K > 0 ? { classLabels: labels ?? Int32Array.from({ length: n }, (_, i) => i % K), guidanceScale: guidance } : {}),
  };
  let sampler: Sampler;
  try {
    sampler = pipelineSampler(pipe.diffusion, request);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  const steps = sampler.timesteps.length;
  const batches = Math.ceil(n / opts.batchSize);
  const cond = K > 0 ? `, class i mod ${K} with guidance ${guidance}` : '';
  log(`sampling ${n} image(s)${cond}: ${opts.sampler}${opts.sampler === 'ddim' ? ` (eta ${opts.eta ?? DEFAULT_DDIM_ETA})` : ` (${varType})`}, ${steps} steps, seed ${opts.seed}, ${batches} batch(es)`);
  const bar = progress('sampling', batches * steps);
  const t0 = performance.now();
  let images: Float32Array;
  try {
    const res = await pipe.generate({ ...request, onProgress: bar.update });
    images = quantizeLikePng(res.samples); // scored as if saved and read back
  } finally {
    bar.stop();
  }
  const sec = (performance.now() - t0) / 1000;
  return {
    images,
    labels,
    source: {
      source: 'generated', n, sampler: opts.sampler, steps, eta: opts.sampler === 'ddim' ? (opts.eta ?? DEFAULT_DDIM_ETA) : null,
      ...(K > 0 ? { classes: `image i of class i mod ${K}`, guidanceScale: guidance } : {}),
      varType: opts.sampler === 'ddpm' ? varType : null, seed: opts.seed, batchSize: opts.batchSize, quantized: '8-bit, as saved PNGs',
      sampleSeconds: round(sec, 4), samplesPerSec: round(n / sec, 4),
    },
  };
}

async function readSamples(dir: string, log: Log): Promise<Scored> {
  const t0 = performance.now();
  let folder;
  try {
    folder = await loadImageFolder(dir, { size: 28, channels: 1 });
  } catch (e) {
    if (e instanceof ImageFolderError) throw new UserError(`--samples: ${e.message}`);
    throw e;
  }
  if (folder.n < 2) throw new UserError(`--samples: FID needs at least 2 images, found ${folder.n} under ${dir}`);
  const images = new Float32Array(folder.n * 784);
  uint8Dataset(folder.images, folder).getBatch(Array.from({ length: folder.n }, (_, i) => i), images); // x/127.5 − 1, as MNIST
  log(`scoring ${folder.n} image(s) from ${dir}`);
  return { images, source: { source: dir, n: folder.n, readSeconds: round((performance.now() - t0) / 1000, 4) } };
}

async function score({ images, source, labels }: Scored, classifier: ClassifierDir, runtime: RuntimeOptions, log: Log): Promise<Report> {
  const { n, fid: fd, realFid, nReal, classes: scores, classAccuracy, seconds: sec } = await scoreSamples(images, classifier, ort, runtime, { labels });
  const d = classifier.info.model.featureDim;
  log(`FID-LeNet: ${fd.fid.toFixed(3)} (|Δμ|² ${fd.meanTerm.toFixed(3)} + covariance ${fd.covTerm.toFixed(3)}) for ${n} images vs the MNIST test set; classifier test accuracy ${(100 * classifier.info.testAccuracy).toFixed(2)}%`);
  if (n <= d) log(`note: ${n} images <= ${d} feature dims: the sample covariance is singular and FID is strongly biased upward; compare only at equal n`);
  const ref = classifier.info.referenceFid as Record<string, number> | undefined;
  log(`  real data at the same n (MNIST train[0:${nReal}] vs test): ${realFid.toFixed(3)}`);
  if (ref) log(`  real data for scale: ${Object.entries(ref).map(([k, v]) => `${k}: ${v.toFixed(3)}`).join('; ')}`);
  log(`classes: ${scores.counts.map((c, k) => `${k}:${c}`).join(' ')}; ${scores.classesCovered}/10 with >= 1%, entropy ${scores.entropyBits.toFixed(3)} bits (uniform ${Math.log2(10).toFixed(3)})`);
  log(`confidence: mean max-softmax ${scores.meanConfidence.toFixed(3)}; ${(100 * scores.confidentFraction).toFixed(1)}% of samples > 0.9 (well-formed digits)`);
  if (classAccuracy) {
    const per = classAccuracy.perClass.map((a, k) => `${k}:${Number.isFinite(a) ? (100 * a).toFixed(0) : '-'}`).join(' ');
    log(`class accuracy: ${(100 * classAccuracy.overall).toFixed(2)}% of samples classified as the class they were generated as (per class, %: ${per})`);
  }
  if (typeof source.sampleSeconds === 'number') {
    log(`timings: sampling ${formatDuration(source.sampleSeconds)} (${(source.samplesPerSec as number).toFixed(2)} img/s), classifier ${sec.toFixed(2)} s`);
  }
  return {
    ...source,
    fidLenet: round(fd.fid), meanTerm: round(fd.meanTerm), covTerm: round(fd.covTerm),
    reference: `MNIST test set (${classifier.testStats.n} images)`,
    realDataFidLenet: { n: nReal, images: `MNIST train[0:${nReal}]`, fidLenet: round(realFid) },
    classes: { ...scores, entropyBits: round(scores.entropyBits), meanConfidence: round(scores.meanConfidence), confidentFraction: round(scores.confidentFraction) },
    ...(classAccuracy ? { classAccuracy: round(classAccuracy.overall), perClassAccuracy: classAccuracy.perClass.map((a) => round(a)) } : {}),
    classifierSeconds: round(sec, 4),
  };
}

/** `ddpm export`: the denoiser as a standalone ONNX file (src/sample/onnx-file.ts), verified, then written atomically. */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { Denoiser } from '../models/denoiser.ts';
import { compileDenoiser } from '../models/denoiser-compile.ts';
import { countParams } from '../models/unet.ts';
import type { RuntimeOptions } from '../engine/runtime.ts';
import { ensureExecutionProvider, nodeRuntime, ort } from '../node/ort.ts';
import { Rng } from '../rng.ts';
import { OPSET } from '../engine/onnx.ts';
import { exportDenoiserFile } from '../sample/onnx-export.ts';
import { checkOpset, readDenoiserFile } from '../sample/onnx-file.ts';
import { MAX_BATCH_SIZE } from '../limits.ts';
import { UserError, addExamples, addRuntimeOptions, checkModelFits, parseIntArg } from './common.ts';
import { SHIPPED_MODEL_NAMES, describeModel, loadModel, packageVersion, type LoadedModel } from '../pipeline/load.ts';
import { checkOutputFile, writeOutputs } from './output.ts';

interface ExportOptions {
  checkpoint?: string;
  out: string;
  opsetCheck?: boolean;
  checkBatch: number;
  threads?: number;
  ep?: string;
}

/** Largest |exported − compiled| accepted, relative to max(1, max |compiled|): float32 rounding of a differently fused graph. */
const MAX_REL_DIFF = 1e-4;

const USAGE_NOTES = `The file has inputs x float32 [N, C, H, W] (x_t, data scaled to [-1, 1]) and t float32 [N] (the
timestep index 0..T-1), and output "out": the model's prediction (e.g. epsilon) in its first C
channels; a model with learned variances (varType learnedRange, as the shipped one) has 2C output
channels, the last C being the variance interpolation v of Nichol & Dhariwal eq. 15. A
class-conditional model (trained with --class-cond) has a third input y int64 [N], the class label
(numClasses = no class), and its class names in ddpm-ts.classes (JSON). Its metadata holds
ddpm-ts.unet and ddpm-ts.diffusion (JSON), ddpm-ts.output (what the channels hold),
ddpm-ts.version and ddpm-ts.step, so \`ddpm sample --checkpoint model.onnx\` needs nothing else.

From Python (pip install onnxruntime numpy):
  import json, numpy as np, onnxruntime as ort
  sess = ort.InferenceSession("model.onnx")
  meta = sess.get_modelmeta().custom_metadata_map
  unet, diff = json.loads(meta["ddpm-ts.unet"]), json.loads(meta["ddpm-ts.diffusion"])
  C, S = unet["inChannels"], unet["imageSize"]
  x = np.random.randn(4, C, S, S).astype(np.float32)
  t = np.full(4, diff["schedule"]["T"] - 1, dtype=np.float32)
  out = sess.run(["out"], {"x": x, "t": t})[0]   # (4, outChannels, S, S): 2C with learned variances
  eps = out[:, :C]                               # the prediction; out[:, C:] is v when learned

From the browser (onnxruntime-web):
  const sess = await ort.InferenceSession.create(url);   // same inputs and output`;

export function exportCommand(): Command {
  const cmd = new Command('export')
    .description('write the denoiser eps_theta(x_t, t) as a standalone ONNX model with its configs in the metadata, then check it in onnxruntime')
    .option('--checkpoint <path>', `the model: a checkpoint, model or run directory, a checkpoint file (.safetensors, as the page downloads), or a shipped model (${SHIPPED_MODEL_NAMES.join(', ')}) (default: mnist-28)`)
    .requiredOption('--out <file>', 'the ONNX file (.onnx, written atomically)')
    .option('--opset-check', 'also check that only standard ONNX operators of the declared opset are used, and that the model runs with graph optimisations off')
    .option('--check-batch <n>', 'batch size of the random verification batch', parseIntArg('--check-batch', 1, MAX_BATCH_SIZE), 4);
  addRuntimeOptions(cmd);
  addExamples(cmd, ['ddpm export --checkpoint mnist-28-cond --out digits.onnx', 'ddpm export --checkpoint runs/my-images --out my-images.onnx --opset-check'], USAGE_NOTES);
  cmd.action(async (opts: ExportOptions) => {
    await runExport(opts);
  });
  return cmd;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return { diff: a.length === b.length ? diff : Infinity, scale };
}

async function runExport(opts: ExportOptions): Promise<void> {
  // 1. options, the output path and the execution provider, model
  if (path.extname(opts.out).toLowerCase() !== '.onnx') throw new UserError(`--out must end in .onnx, got '${opts.out}'`);
  await checkOutputFile('--out', opts.out);
  const rt = nodeRuntime(opts);
  await ensureExecutionProvider(opts.ep);
  const model = await loadModel(opts.checkpoint, { allowOnnx: false });
  checkModelFits(model.unet, 'sample', opts.checkBatch, model.file); // the verification runs the model at --check-batch
  const weights = model.weights!;

  // 2. export, then write atomically: the file is verified under its temporary name (steps 3 and 4) and replaces
  //    --out only if it passes, so a failed check leaves no .onnx (and an older one as it was)
  const bytes = exportDenoiserFile(model.unet, weights, { diffusion: model.diffusion, version: packageVersion(), step: model.step, classNames: model.classNames });
  await writeOutputs([{ flag: '--out', file: opts.out, data: bytes, fsync: true, verify: (tmp) => verifyExport(tmp, model, rt, opts) }]);
  process.stdout.write(
    `wrote ${opts.out}: ${(bytes.length / 1e6).toFixed(2)} MB, ${countParams(weights).toLocaleString('en-US')} parameters, ` +
      `from ${model.file} (${describeModel(model)})\n`,
  );
}

/** Steps 3 and 4 of runExport on the staged file `file`; throws when it is not fit to replace --out. */
async function verifyExport(file: string, model: LoadedModel, rt: RuntimeOptions, opts: ExportOptions): Promise<void> {
  // 3. read it back: metadata round trip, then the file in onnxruntime vs the compiled forward (weights fed as inputs)
  const weights = model.weights!;
  const back = new Uint8Array(await fsp.readFile(file));
  const meta = readDenoiserFile(back);
  const names = (m: { unet: LoadedModel['unet']; classNames?: string[] }) =>
    JSON.stringify(m.classNames ?? Array.from({ length: m.unet.numClasses }, (_, i) => String(i)));
  if (JSON.stringify(meta.unet) !== JSON.stringify(model.unet) || JSON.stringify(meta.diffusion) !== JSON.stringify(model.diffusion) || names(meta) !== names(model)) {
    throw new Error(`${opts.out}: the configs read back from the metadata differ from the checkpoint's; nothing written`);
  }
  const { unet } = model;
  const B = opts.checkBatch;
  const x = new Rng(0).normalFloat32(B * unet.inChannels * unet.imageSize * unet.imageSize);
  const T = model.diffusion.schedule.T;
  const t = Int32Array.from({ length: B }, (_, i) => (B === 1 ? T - 1 : Math.round((i * (T - 1)) / (B - 1)))); // both ends of the process
  // a class-conditional model: labels 0, 1, ..., with ∅ (numClasses) last
  const K = unet.numClasses;
  const y = Int32Array.from({ length: B }, (_, i) => (i === B - 1 ? K : i % K));
  const run = (d: Denoiser) => (K > 0 ? d.predictClass(x, t, y) : d.predict(x, t));
  const compiled = await compileDenoiser(ort, unet, weights, { ...rt, weightsAsInputs: true });
  let ref: Float32Array;
  let got: Float32Array;
  try {
    const exported = await Denoiser.fromOnnx(ort, meta.unet, back, rt);
    try {
      ref = await run(compiled);
      got = await run(exported);
    } finally {
      await exported.release();
    }
  } finally {
    await compiled.release();
  }
  if (!ref.every(Number.isFinite)) {
    throw new UserError(`${model.file}: the model's output on the check batch is not finite (NaN or Inf in the weights?); --out ${opts.out} not written`);
  }
  const { diff, scale } = maxAbsDiff(got, ref);
  process.stdout.write(
    `check: onnxruntime on ${opts.out} vs compiled forward, batch ${B}, t = [${[...t].join(', ')}]${K > 0 ? `, y = [${[...y].join(', ')}]` : ''}: ` +
      `max abs diff ${diff.toExponential(2)} (max |out| ${scale.toFixed(3)})\n`,
  );
  if (!(diff <= MAX_REL_DIFF * Math.max(1, scale))) {
    throw new Error(`exported model disagrees with the compiled forward: max abs diff ${diff} > ${MAX_REL_DIFF * Math.max(1, scale)}; --out ${opts.out} not written`);
  }

  // 4. optionally, opset conformance and an unoptimised run
  if (opts.opsetCheck) {
    const report = checkOpset(back, OPSET);
    const opsets = Object.entries(report.opsets).map(([d, v]) => `${d || 'ai.onnx'} ${v}`).join(', ');
    const ops = Object.entries(report.ops).map(([op, n]) => `${op} ${n}`).join(', ');
    process.stdout.write(`opset: IR ${report.irVersion}, ${opsets}; ops: ${ops}\n`);
    const plain = await Denoiser.fromOnnx(ort, meta.unet, back, { ...rt, graphOptimizationLevel: 'disabled' });
    let plainOut: Float32Array;
    try {
      plainOut = await run(plain);
    } finally {
      await plain.release();
    }
    const d2 = maxAbsDiff(plainOut, ref).diff;
    process.stdout.write(`opset: runs with graph optimisations off, max abs diff ${d2.toExponential(2)}\n`);
    if (!(d2 <= MAX_REL_DIFF * Math.max(1, scale))) report.problems.push(`unoptimised run differs by ${d2}`);
    if (report.problems.length > 0) throw new Error(`opset check failed: ${report.problems.join('; ')}; --out ${opts.out} not written`);
    process.stdout.write('opset: ok (standard operators only)\n');
  }
}

/**
 * The standalone .onnx from `ddpm export` as hostile input (src/sample/onnx-file.ts, src/pipeline/load.ts): metadata
 * that breaks its own format is refused when read, and a graph that onnxruntime loads but cannot run is refused
 * at load by `sample` and `eval` (exit 2, one line naming the file, nothing written), before any other work.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { conciseOrtMessage } from '../src/engine/runtime.ts';
import { initUNet, unetConfig, UNET_CONFIGS, type UNetConfig } from '../src/models/unet.ts';
import { Rng } from '../src/rng.ts';
import { exportDenoiserFile } from '../src/sample/onnx-export.ts';
import { META_STEP, readDenoiserFile } from '../src/sample/onnx-file.ts';
import { defaultTrainConfig } from '../src/train/config.ts';
import { assertUserError, runCli } from './cli-helpers.ts';

type ModelProto = ReturnType<typeof onnxProto.onnx.ModelProto.decode>;

let dir: string;
const at = (name: string) => path.join(dir, name);

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ddpm-onnx-file-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function exported(unet: UNetConfig = UNET_CONFIGS.tiny!, step?: number): Uint8Array {
  return exportDenoiserFile(unet, initUNet(unet, new Rng(0)), { diffusion: defaultTrainConfig('tiny').diffusion, version: 'test', step });
}

/** `bytes` decoded, changed by `edit`, encoded again. */
function patched(bytes: Uint8Array, edit: (m: ModelProto) => void): Uint8Array {
  const m = onnxProto.onnx.ModelProto.decode(bytes);
  edit(m);
  return onnxProto.onnx.ModelProto.encode(m).finish();
}

function withStep(bytes: Uint8Array, value: string): Uint8Array {
  return patched(bytes, (m) => {
    for (const p of m.metadataProps ?? []) if (p.key === META_STEP) p.value = value;
  });
}

/** The first Conv reads `t` (shape [N]) as its weight: a valid protobuf that onnxruntime loads, and fails to run. */
function convReadsT(bytes: Uint8Array): Uint8Array {
  return patched(bytes, (m) => {
    const conv = m.graph!.node!.find((n) => n.opType === 'Conv')!;
    conv.input![1] = 't';
  });
}

test('readDenoiserFile: the step is a non-negative decimal integer, or the file is refused', () => {
  const bytes = exported(UNET_CONFIGS.tiny, 7);
  assert.equal(readDenoiserFile(bytes).step, 7);
  assert.equal(readDenoiserFile(exported()).step, undefined, 'no step metadata: unknown');
  assert.equal(readDenoiserFile(withStep(bytes, '0')).step, 0);
  for (const bad of ['-1', '1.5', '1e3', '0x10', ' 5', '', 'abc', '007', '9007199254740993']) {
    assert.throws(() => readDenoiserFile(withStep(bytes, bad)), new RegExp(`^Error: metadata 'ddpm-ts\\.step' must be a non-negative integer, got ${JSON.stringify(bad).replace(/[.+]/g, '\\$&')}$`), bad);
  }
});

test('readDenoiserFile: a graph that fixes the batch size is refused (samplers run any N)', () => {
  const fixed = patched(exported(), (m) => {
    const x = m.graph!.input!.find((i) => i.name === 'x')!;
    const d0 = x.type!.tensorType!.shape!.dim![0]!;
    d0.dimParam = '';
    d0.dimValue = 2 as never;
  });
  assert.throws(() => readDenoiserFile(fixed), /^Error: ONNX metadata \(ddpm-ts\.unet\) says input 'x' is \[N, 1, 8, 8\], the graph declares \[2, 1, 8, 8\]$/);
});

test('readDenoiserFile: metadata nested 20,000 deep is refused with a short message (it was a RangeError)', () => {
  const deep = '['.repeat(20000) + ']'.repeat(20000);
  const bytes = patched(exported(), (m) => {
    for (const p of m.metadataProps ?? []) if (p.key === 'ddpm-ts.unet') p.value = p.value!.replace(/"dropout":0/, `"dropout":${deep}`);
  });
  assert.throws(() => readDenoiserFile(bytes), /^Error: ONNX metadata: U-Net config: dropout must be in \[0, 1\), got \[\[\[…\]\]\]$/);
});

test('sample: an .onnx that loads but fails at run time is one line naming the file, exit 2, no output', async () => {
  const file = at('conv-reads-t.onnx');
  await writeFile(file, convReadsT(exported()));
  const out = at('never.png');
  const r = await runCli(['sample', '--checkpoint', file, '--n', '2', '--steps', '2', '--sampler', 'ddim', '--threads', '1', '--out', out]);
  assertUserError(r, /^error: .*conv-reads-t\.onnx: onnxruntime cannot run this model: Non-zero status code returned while running Conv node\..*\n$/);
  assert.doesNotMatch(r.stderr, /onnxruntime_src|was false/, 'no ORT_ENFORCE source location');
  assert.doesNotMatch(r.stdout, /sampling/, 'refused before sampling');
  assert.equal(existsSync(out), false);
});

test('eval: the same check refuses a broken 28x28 .onnx before the NLL or FID work', async () => {
  const file = at('conv-reads-t-28.onnx');
  await writeFile(file, convReadsT(exported(unetConfig({ imageSize: 28 }, UNET_CONFIGS.tiny))));
  const r = await runCli(['eval', '--checkpoint', file, '--nll', '1', '--threads', '1']);
  assertUserError(r, /^error: .*conv-reads-t-28\.onnx: onnxruntime cannot run this model: .*Conv.*\n$/);
});

test('a valid exported .onnx still samples (the load check passes it)', async () => {
  const file = at('good.onnx');
  await writeFile(file, exported(UNET_CONFIGS.tiny, 3));
  const out = at('good.png');
  const r = await runCli(['sample', '--checkpoint', file, '--n', '2', '--steps', '2', '--sampler', 'ddim', '--threads', '1', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /step 3\)/);
  assert.ok(existsSync(out));
});

test('conciseOrtMessage: the ORT_ENFORCE location inside a run-time error is removed too', () => {
  const raw =
    "Non-zero status code returned while running Reshape node. Name:'n268_Reshape' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/tensor/reshape_helper.h:91 " +
    'onnxruntime::ReshapeHelper::ReshapeHelper(const onnxruntime::TensorShape&, onnxruntime::TensorShapeVector&, bool) input_shape_size == requested_shape_size was false. ' +
    'The input tensor cannot be reshaped to the requested shape. Input shape:{1,16,1,1}, requested shape:{1,4,64}\n';
  assert.equal(
    conciseOrtMessage(raw),
    "Non-zero status code returned while running Reshape node. Name:'n268_Reshape' Status Message: The input tensor cannot be reshaped to the requested shape. Input shape:{1,16,1,1}, requested shape:{1,4,64}",
  );
});

test('an int64 shape constant beyond any tensor of the described model is refused when the file is read (onnxruntime took 12 s, 2.2 GB)', () => {
  const bytes = patched(exported(), (m) => {
    const c = m.graph!.initializer!.find((t) => t.dataType === onnxProto.onnx.TensorProto.DataType.INT64 && t.rawData && t.rawData.length === 32)!;
    const v = new BigInt64Array(Uint8Array.from(c.rawData!).buffer);
    v[1] = 2130706435n;
    c.rawData = new Uint8Array(v.buffer);
  });
  assert.throws(() => readDenoiserFile(bytes), /at most 1024 elements, the graph's int64 constant '.*' holds 2130706435/);
  assert.doesNotThrow(() => readDenoiserFile(exported()));
});

/**
 * engine/onnx-read.ts, the protobuf-free reader of an ONNX model's header, against onnx-proto (protobufjs), the
 * library the exporter writes with: the same IR version, opsets, metadata, graph inputs/outputs with their dims and
 * node operators, on exported models and on edited ones; bytes that are not a protobuf message are refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import onnxProto from 'onnx-proto';
import { MAX_INT64_CONSTANT, readOnnxHeader, type OnnxModelHeader } from '../src/engine/onnx-read.ts';
import { initUNet, UNET_CONFIGS } from '../src/models/unet.ts';
import { Rng } from '../src/rng.ts';
import { exportDenoiserFile } from '../src/sample/onnx-export.ts';
import { defaultTrainConfig } from '../src/train/config.ts';

const { onnx } = onnxProto;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The header as onnx-proto decodes it, in readOnnxHeader's shape. */
function viaProtobufjs(bytes: Uint8Array): OnnxModelHeader {
  const m = onnx.ModelProto.decode(bytes);
  const valueInfo = (v: onnxProto.onnx.IValueInfoProto) => {
    const tensorType = v.type?.tensorType;
    const shape = tensorType?.shape;
    const out: { name: string; dims?: { value?: number; param?: string }[]; elemType?: number } = { name: v.name ?? '' };
    // protobufjs keeps defaults on the prototype: a field the file has is an own property
    if (tensorType && Object.hasOwn(tensorType, 'elemType')) out.elemType = Number(tensorType.elemType);
    if (shape) {
      out.dims = (shape.dim ?? []).map((d) => {
        const r: { value?: number; param?: string } = {};
        if (d.dimValue !== null && d.dimValue !== undefined) r.value = Number(d.dimValue);
        if (d.dimParam !== null && d.dimParam !== undefined) r.param = d.dimParam;
        return r;
      });
    }
    return out;
  };
  const metadata: Record<string, string> = {};
  for (const p of m.metadataProps ?? []) metadata[p.key ?? ''] = p.value ?? '';
  return {
    irVersion: Number(m.irVersion ?? 0),
    opsetImport: (m.opsetImport ?? []).map((o) => ({ domain: o.domain ?? '', version: Number(o.version ?? 0) })),
    metadata,
    ...(m.graph
      ? {
          graph: {
            inputs: (m.graph.input ?? []).map(valueInfo),
            outputs: (m.graph.output ?? []).map(valueInfo),
            nodes: (m.graph.node ?? []).map((n) => ({ opType: n.opType ?? '', domain: n.domain ?? '' })),
            int64Constants: (m.graph.initializer ?? []).flatMap((t) => {
              const count = (t.dims ?? []).reduce((a: number, d) => a * Number(d), 1);
              if (t.dataType !== onnx.TensorProto.DataType.INT64 || count > MAX_INT64_CONSTANT) return [];
              const raw = t.rawData;
              const values =
                raw && raw.length > 0
                  ? Array.from(new BigInt64Array(Uint8Array.from(raw).buffer), Number)
                  : (t.int64Data ?? []).map((v) => Number(v));
              return [{ name: t.name ?? '', values }];
            }),
          },
        }
      : {}),
  };
}

const tiny = (): Uint8Array => {
  const cfg = defaultTrainConfig('tiny');
  return exportDenoiserFile(cfg.model, initUNet(cfg.model, new Rng(0)), { diffusion: cfg.diffusion, version: 'test', step: 3 });
};

test('readOnnxHeader reads what onnx-proto decodes: the shipped model.onnx and a fresh export', () => {
  const shipped = new Uint8Array(readFileSync(path.join(ROOT, 'models', 'mnist-28', 'model.onnx')));
  for (const bytes of [shipped, tiny()]) {
    const got = readOnnxHeader(bytes);
    assert.deepEqual(got, viaProtobufjs(bytes));
    assert.equal(got.graph!.inputs[0]!.name, 'x');
    assert.deepEqual(got.graph!.inputs[0]!.dims![0], { param: 'N' });
    assert.ok(got.graph!.nodes.length > 10 && got.metadata['ddpm-ts.unet']!.startsWith('{'));
  }
});

test('readOnnxHeader: edited headers (fixed dims, negative and large int64, custom domains, a missing shape, a key __proto__)', () => {
  const m = onnx.ModelProto.decode(tiny());
  const x = m.graph!.input!.find((i) => i.name === 'x')!;
  x.type!.tensorType!.shape!.dim![0] = onnx.TensorShapeProto.Dimension.create({ dimValue: -1 as never });
  x.type!.tensorType!.shape!.dim![1] = onnx.TensorShapeProto.Dimension.create({ dimValue: 2 ** 40 as never });
  m.graph!.input!.find((i) => i.name === 't')!.type!.tensorType!.shape = null;
  m.graph!.node![0]!.domain = 'com.example';
  m.opsetImport!.push(onnx.OperatorSetIdProto.create({ domain: 'com.example', version: 3 as never }));
  m.metadataProps!.push(onnx.StringStringEntryProto.create({ key: '__proto__', value: 'x' }), onnx.StringStringEntryProto.create({ key: 'ünïcode', value: 'ε θ' }));
  const bytes = onnx.ModelProto.encode(m).finish();
  const got = readOnnxHeader(bytes);
  const want = viaProtobufjs(bytes);
  assert.deepEqual(got.graph, want.graph);
  assert.deepEqual(got.opsetImport, want.opsetImport);
  assert.deepEqual(got.graph!.inputs[0]!.dims!.slice(0, 2), [{ value: -1 }, { value: 2 ** 40 }]);
  assert.equal(got.graph!.inputs.find((i) => i.name === 't')!.dims, undefined);
  assert.equal(Object.getPrototypeOf(got.metadata), Object.prototype, 'a metadata key __proto__ must not set the prototype');
  assert.equal(Object.getOwnPropertyDescriptor(got.metadata, '__proto__')?.value, 'x');
  assert.equal(got.metadata['ünïcode'], 'ε θ');
});

test('readOnnxHeader refuses bytes that are not a protobuf message: truncations, bad wire types, lengths past the end', () => {
  const bytes = tiny();
  // every cut inside the graph field (which holds the weights) leaves a length that runs past the end
  for (const cut of [1, 5, 100, bytes.length >> 1, bytes.length - 1]) {
    assert.throws(() => readOnnxHeader(bytes.subarray(0, cut)), /runs past its end|truncated|invalid/, `cut at ${cut}`);
  }
  assert.throws(() => readOnnxHeader(Uint8Array.of(0x17)), /invalid wire type 7/); // field 2 (skipped)
  assert.throws(() => readOnnxHeader(Uint8Array.of(0x00)), /invalid field key/);
  assert.throws(() => readOnnxHeader(Uint8Array.of(0x08, ...new Array(11).fill(0xff))), /varint longer than 10 bytes/);
  assert.throws(() => readOnnxHeader(Uint8Array.of(0x3a, 0x80, 0x80, 0x80, 0x80, 0x08)), /runs past its end/);
  assert.throws(() => readOnnxHeader(Uint8Array.of(0x38, 0x01)), /field 7 has wire type 0, expected 2/);
  const png = new Uint8Array(readFileSync(path.join(ROOT, 'docs', 'samples.png')));
  assert.throws(() => readOnnxHeader(png));
  assert.deepEqual(readOnnxHeader(new Uint8Array(0)), { irVersion: 0, opsetImport: [], metadata: {} }, 'an empty message is a model with no fields');
});

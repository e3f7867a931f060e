/**
 * Protobuf-aware mutation of the ONNX files `ddpm export` writes: decode the ModelProto, edit what a reader
 * trusts (metadata_props JSON such as ddpm-ts.unet imageSize, graph input dims, initializer dims / raw data /
 * types, node op types and attributes, opset and IR versions), encode again; plus byte-level edits.
 */
import onnxProto from 'onnx-proto';
import { INTERESTING_INTS, mutateBytes, mutateBytesOnce, mutateJsonText, type Rng } from './mutate.ts';

const { onnx } = onnxProto;

type Model = ReturnType<typeof onnx.ModelProto.decode>;

const UNET_FIELDS = ['imageSize', 'inChannels', 'outChannels', 'baseChannels', 'numResBlocks', 'groups', 'channelMults', 'attnResolutions', 'dropout'];
const DIM_VALUES = [0, 1, 2, 3, 4, 7, 8, 16, 28, 4096, 29360128, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53, -1, -(2 ** 31)];

/** Set one field of the ddpm-ts.unet JSON to an edge value (the focused case; general JSON edits come too). */
function mutateUnetJson(text: string, rng: Rng): string {
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return mutateJsonText(text, rng);
  }
  if (obj === null || typeof obj !== 'object') return mutateJsonText(text, rng);
  const k = rng.pick(UNET_FIELDS);
  if (k === 'channelMults' || k === 'attnResolutions') {
    obj[k] = rng.pick([[], [1], [1, 2], [1, 2000], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [4, 8], 4, null, ['1'], [0.5], [-1]]);
  } else {
    obj[k] = rng.chance(0.8) ? rng.pick(DIM_VALUES) : rng.pick([0.5, '8', null, true, [8]]);
  }
  try {
    return JSON.stringify(obj);
  } catch {
    return mutateJsonText(text, rng); // a value nested too deep for JSON.stringify (from an earlier edit)
  }
}

function mutateModel(m: Model, rng: Rng): void {
  const g = m.graph;
  switch (rng.int(9)) {
    case 0: case 1: case 2: { // metadata values (the configs a reader trusts)
      const props = m.metadataProps ?? [];
      if (props.length === 0) return;
      const p = rng.pick(props);
      const v = p.value ?? '';
      if (p.key === 'ddpm-ts.unet' && rng.chance(0.6)) p.value = mutateUnetJson(v, rng);
      else if (p.key === 'ddpm-ts.step') p.value = rng.pick(['-1', '1e400', 'abc', '', '2.5', '9007199254740993', String(rng.pick(INTERESTING_INTS))]);
      else p.value = mutateJsonText(v, rng);
      return;
    }
    case 3: { // metadata entries: delete, duplicate with another value, rename
      const props = m.metadataProps ?? [];
      if (props.length === 0) return;
      const i = rng.int(props.length);
      const r = rng.int(3);
      if (r === 0) props.splice(i, 1);
      else if (r === 1) props.push(onnx.StringStringEntryProto.create({ key: props[i]!.key, value: mutateJsonText(props[i]!.value ?? '', rng) }));
      else props[i]!.key = rng.pick(['ddpm-ts.unet', 'ddpm-ts.diffusion', 'ddpm-ts.step', '', 'ddpm-ts.unet ', 'x']);
      return;
    }
    case 4: { // graph input / output dims
      const vis = [...(g?.input ?? []), ...(g?.output ?? [])];
      const vi = vis.length > 0 ? rng.pick(vis) : undefined;
      const dims = vi?.type?.tensorType?.shape?.dim;
      if (!dims || dims.length === 0) return;
      const d = rng.pick(dims);
      if (rng.chance(0.8)) {
        d.dimValue = rng.pick(DIM_VALUES) as never;
        d.dimParam = '';
      } else {
        d.dimParam = rng.pick(['N', 'M', '']);
        d.dimValue = 0 as never;
      }
      if (rng.chance(0.1) && vi?.type?.tensorType) vi.type.tensorType.elemType = rng.pick([0, 1, 6, 7, 10, 11, 16, 99]);
      return;
    }
    case 5: { // an initializer: dims, raw data length, data type
      const inits = g?.initializer ?? [];
      if (inits.length === 0) return;
      const t = rng.pick(inits);
      const r = rng.int(4);
      if (r === 0 && t.dims && t.dims.length > 0) (t.dims as unknown[])[rng.int(t.dims.length)] = rng.pick(DIM_VALUES);
      else if (r === 1) t.dims = Array.from({ length: rng.pick([0, 1, 5, 9]) }, () => rng.pick(DIM_VALUES)) as never;
      else if (r === 2 && t.rawData && t.rawData.length > 0) t.rawData = mutateBytesOnce(t.rawData, rng);
      else t.dataType = rng.pick([0, 1, 2, 6, 7, 9, 10, 11, 16, 99]);
      return;
    }
    case 6: { // a node: op type, an attribute value, inputs
      const nodes = g?.node ?? [];
      if (nodes.length === 0) return;
      const n = rng.pick(nodes);
      const r = rng.int(4);
      if (r === 0) n.opType = rng.pick(['Conv', 'Add', 'MatMul', 'Reshape', 'Concat', 'Softmax', 'Unknown', 'GroupNormalization', '']);
      else if (r === 1 && n.attribute && n.attribute.length > 0) {
        const a = rng.pick(n.attribute);
        if (a.ints && a.ints.length > 0) (a.ints as unknown[])[rng.int(a.ints.length)] = rng.pick(DIM_VALUES);
        else if (a.i !== undefined && a.i !== null) a.i = rng.pick(DIM_VALUES) as never;
        else a.f = rng.pick([0, -1, 1e30, Number.NaN]);
      } else if (r === 2 && n.input && n.input.length > 0) n.input[rng.int(n.input.length)] = rng.pick(['x', 't', '', 'nope', n.output?.[0] ?? '']);
      else if (g?.node) g.node.splice(rng.int(g.node.length), 1);
      return;
    }
    case 7: { // opset / IR version
      if (rng.chance(0.5) && m.opsetImport && m.opsetImport.length > 0) m.opsetImport[0]!.version = rng.pick([0, 1, 7, 13, 17, 18, 21, 99]) as never;
      else m.irVersion = rng.pick([0, 1, 3, 7, 8, 9, 10, 99]) as never;
      return;
    }
    default: { // graph input/output names
      const vis = [...(g?.input ?? []), ...(g?.output ?? [])];
      if (vis.length > 0) rng.pick(vis).name = rng.pick(['x', 't', 'out', 'X', '', 'v0']);
    }
  }
}

/** One mutated ONNX file: 1-3 structural edits (80%), then sometimes byte edits; or byte edits alone. */
export function mutateOnnx(seed: Uint8Array, rng: Rng, other?: Uint8Array): Uint8Array {
  if (rng.chance(0.15)) return mutateBytes(seed, rng, other);
  let model: Model;
  try {
    model = onnx.ModelProto.decode(seed);
  } catch {
    return mutateBytes(seed, rng, other);
  }
  for (let k = rng.count(3); k > 0; k--) mutateModel(model, rng);
  let out = onnx.ModelProto.encode(model).finish();
  if (rng.chance(0.1)) out = mutateBytes(out, rng, other);
  return out;
}

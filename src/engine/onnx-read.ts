/**
 * Reading an ONNX model's header without a protobuf library: the IR version, the operator sets, the metadata,
 * the graph's inputs and outputs with their shapes, and each node's operator. Everything else (initializers,
 * attributes, doc strings) is skipped by its length, never copied, so a 100 MB file costs one pass over its
 * field headers. The page imports this instead of onnx-proto/protobufjs (about 120 KB of a worker bundle).
 *
 * Protobuf wire format (https://protobuf.dev/programming-guides/encoding/): each field is a varint key
 * (field number << 3 | wire type) followed by a varint (type 0), 8 bytes (1), a varint length and that many
 * bytes (2), or 4 bytes (5). Field numbers are those of onnx.proto (ONNX 1.12, IR version 8). A singular message
 * that appears twice is taken from its last occurrence (as protobufjs decodes it, without merging).
 * No node:* imports.
 */

/** One dimension of a declared shape: a fixed size, a symbolic name, or neither (unknown). */
export interface OnnxDim {
  value?: number;
  param?: string;
}

export interface OnnxValueInfo {
  name: string;
  /** the declared tensor shape; undefined when the value declares none */
  dims?: OnnxDim[];
  /** the declared element type (TensorProto.DataType: 1 float, 7 int64, ...); undefined when the value declares none */
  elemType?: number;
}

export interface OnnxNodeInfo {
  opType: string;
  /** '' for the default (ai.onnx) domain */
  domain: string;
}

/** A small int64 initializer (a shape, axes or pads vector), with its values. */
export interface OnnxInt64Constant {
  name: string;
  values: number[];
}

/** int64 initializers with at most this many elements are read (shape vectors); larger ones are skipped. */
export const MAX_INT64_CONSTANT = 64;

export interface OnnxModelHeader {
  irVersion: number;
  /** declared operator sets in file order */
  opsetImport: { domain: string; version: number }[];
  /** metadata_props, key -> value (a repeated key keeps its last value) */
  metadata: Record<string, string>;
  /** undefined when the model has no graph */
  graph?: { inputs: OnnxValueInfo[]; outputs: OnnxValueInfo[]; nodes: OnnxNodeInfo[]; int64Constants: OnnxInt64Constant[] };
}

// field numbers in onnx.proto
const MODEL = { irVersion: 1, opsetImport: 8, graph: 7, metadataProps: 14 } as const;
const OPSET_ID = { domain: 1, version: 2 } as const;
const ENTRY = { key: 1, value: 2 } as const;
const GRAPH = { node: 1, initializer: 5, input: 11, output: 12 } as const;
const TENSOR = { dims: 1, dataType: 2, int64Data: 7, name: 8, rawData: 9 } as const;
const INT64 = 7; // TensorProto.DataType.INT64
const NODE = { opType: 4, domain: 7 } as const;
const VALUE_INFO = { name: 1, type: 2 } as const;
const TYPE = { tensorType: 1 } as const;
const TENSOR_TYPE = { elemType: 1, shape: 2 } as const;
const SHAPE = { dim: 1 } as const;
const DIM = { value: 1, param: 2 } as const;

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

const utf8 = new TextDecoder();

/** A protobuf message: bytes [pos, end) of `buf`. */
class Reader {
  constructor(
    private readonly buf: Uint8Array,
    public pos: number,
    private readonly end: number,
  ) {}

  done(): boolean {
    return this.pos >= this.end;
  }

  /** A varint as two 32-bit halves (protobuf varints hold at most 64 bits, in at most 10 bytes). */
  private varint(): [lo: number, hi: number] {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error(`truncated varint at offset ${this.pos}`);
      const b = this.buf[this.pos++]!;
      const bits = b & 0x7f;
      if (i < 4) lo += bits * 2 ** (7 * i);
      else if (i === 4) {
        lo += (bits & 0x0f) * 2 ** 28;
        hi += bits >>> 4;
      } else hi += bits * 2 ** (7 * i - 32);
      if (b < 0x80) return [lo, hi % 2 ** 32];
    }
    throw new Error(`varint longer than 10 bytes at offset ${this.pos}`);
  }

  /** A varint read as int64 (two's complement), as a number (exact up to 2^53). */
  int64(): number {
    const [lo, hi] = this.varint();
    return hi >= 2 ** 31 ? (hi - 2 ** 32) * 2 ** 32 + lo : hi * 2 ** 32 + lo;
  }

  /** A field key; undefined at the end of the message. */
  key(): { field: number; wire: number } | undefined {
    if (this.done()) return undefined;
    const start = this.pos;
    const k = this.int64();
    const field = Math.floor(k / 8);
    if (k < 0 || field === 0 || field > 2 ** 29 - 1) throw new Error(`invalid field key at offset ${start}`);
    return { field, wire: k % 8 };
  }

  /** The body of a length-delimited field as a reader of its own. */
  message(): Reader {
    const at = this.pos;
    const n = this.int64();
    if (n < 0 || n > this.end - this.pos) throw new Error(`field of ${n} bytes at offset ${at} runs past its end (${this.end})`);
    const r = new Reader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }

  string(): string {
    const r = this.message();
    return utf8.decode(this.buf.subarray(r.pos, r.end));
  }

  /** The body of a length-delimited field as bytes (a view, not a copy). */
  bytes(): Uint8Array {
    const r = this.message();
    return this.buf.subarray(r.pos, r.end);
  }

  skip(wire: number): void {
    switch (wire) {
      case VARINT:
        this.varint();
        return;
      case I64:
        this.advance(8);
        return;
      case LEN:
        this.message();
        return;
      case I32:
        this.advance(4);
        return;
      default:
        throw new Error(`invalid wire type ${wire} at offset ${this.pos}`);
    }
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw new Error(`truncated field at offset ${this.pos}`);
    this.pos += n;
  }
}

/** Calls `on(field, reader)` for each field of `r` whose wire type `wanted` lists; skips the others. */
function fields(r: Reader, wanted: Record<number, number>, on: (field: number, r: Reader) => void): void {
  for (let k = r.key(); k !== undefined; k = r.key()) {
    const wire = wanted[k.field];
    if (wire === undefined) r.skip(k.wire);
    else if (wire !== k.wire) throw new Error(`field ${k.field} has wire type ${k.wire}, expected ${wire}`);
    else on(k.field, r);
  }
}

function readDim(r: Reader): OnnxDim {
  const d: OnnxDim = {};
  fields(r, { [DIM.value]: VARINT, [DIM.param]: LEN }, (f, r) => {
    if (f === DIM.value) d.value = r.int64();
    else d.param = r.string();
  });
  return d;
}

/** An int64 initializer's values, or undefined for another type or more than MAX_INT64_CONSTANT elements. */
function readInt64Constant(r: Reader): OnnxInt64Constant | undefined {
  let name = '';
  let dataType = 0;
  let count = 1;
  let raw: Uint8Array | undefined;
  const int64Data: Reader[] = [];
  fields(r, { [TENSOR.dims]: LEN, [TENSOR.dataType]: VARINT, [TENSOR.int64Data]: LEN, [TENSOR.name]: LEN, [TENSOR.rawData]: LEN }, (f, r) => {
    if (f === TENSOR.name) name = r.string();
    else if (f === TENSOR.dataType) dataType = r.int64();
    else if (f === TENSOR.rawData) raw = r.bytes();
    else if (f === TENSOR.int64Data) int64Data.push(r.message()); // packed repeated int64
    else {
      const d = r.message(); // packed repeated int64
      while (!d.done()) count *= d.int64();
    }
  });
  if (dataType !== INT64 || !(count >= 0 && count <= MAX_INT64_CONSTANT)) return undefined;
  const values: number[] = [];
  if (raw !== undefined) {
    if (raw.length !== 8 * count) throw new Error(`int64 initializer '${name}' has ${raw.length} bytes for ${count} elements`);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < count; i++) values.push(Number(view.getBigInt64(8 * i, true)));
  } else {
    for (const d of int64Data) while (!d.done()) values.push(d.int64());
  }
  return { name, values };
}

function readValueInfo(r: Reader): OnnxValueInfo {
  const v: OnnxValueInfo = { name: '' };
  fields(r, { [VALUE_INFO.name]: LEN, [VALUE_INFO.type]: LEN }, (f, r) => {
    if (f === VALUE_INFO.name) v.name = r.string();
    else {
      // a repeated singular message: the last one counts
      delete v.dims;
      delete v.elemType;
      fields(r.message(), { [TYPE.tensorType]: LEN }, (_, r) => {
        delete v.dims;
        delete v.elemType;
        fields(r.message(), { [TENSOR_TYPE.elemType]: VARINT, [TENSOR_TYPE.shape]: LEN }, (f, r) => {
          if (f === TENSOR_TYPE.elemType) {
            v.elemType = r.int64();
            return;
          }
          const dims: OnnxDim[] = [];
          fields(r.message(), { [SHAPE.dim]: LEN }, (_, r) => dims.push(readDim(r.message())));
          v.dims = dims;
        });
      });
    }
  });
  return v;
}

/** The header of an ONNX model (see the file comment); throws a plain Error on bytes that are not a protobuf message. */
export function readOnnxHeader(bytes: Uint8Array): OnnxModelHeader {
  const model: OnnxModelHeader = { irVersion: 0, opsetImport: [], metadata: {} };
  const top = new Reader(bytes, 0, bytes.length);
  const wanted = { [MODEL.irVersion]: VARINT, [MODEL.opsetImport]: LEN, [MODEL.graph]: LEN, [MODEL.metadataProps]: LEN };
  fields(top, wanted, (f, r) => {
    if (f === MODEL.irVersion) model.irVersion = r.int64();
    else if (f === MODEL.opsetImport) {
      const o = { domain: '', version: 0 };
      fields(r.message(), { [OPSET_ID.domain]: LEN, [OPSET_ID.version]: VARINT }, (f, r) => {
        if (f === OPSET_ID.domain) o.domain = r.string();
        else o.version = r.int64();
      });
      model.opsetImport.push(o);
    } else if (f === MODEL.metadataProps) {
      let key = '';
      let value = '';
      fields(r.message(), { [ENTRY.key]: LEN, [ENTRY.value]: LEN }, (f, r) => {
        if (f === ENTRY.key) key = r.string();
        else value = r.string();
      });
      // defineProperty: a key '__proto__' is data like any other
      Object.defineProperty(model.metadata, key, { value, enumerable: true, writable: true, configurable: true });
    } else {
      const graph = { inputs: [] as OnnxValueInfo[], outputs: [] as OnnxValueInfo[], nodes: [] as OnnxNodeInfo[], int64Constants: [] as OnnxInt64Constant[] };
      fields(r.message(), { [GRAPH.node]: LEN, [GRAPH.initializer]: LEN, [GRAPH.input]: LEN, [GRAPH.output]: LEN }, (f, r) => {
        if (f === GRAPH.input) graph.inputs.push(readValueInfo(r.message()));
        else if (f === GRAPH.initializer) {
          const c = readInt64Constant(r.message());
          if (c) graph.int64Constants.push(c);
        }
        else if (f === GRAPH.output) graph.outputs.push(readValueInfo(r.message()));
        else {
          const n: OnnxNodeInfo = { opType: '', domain: '' };
          fields(r.message(), { [NODE.opType]: LEN, [NODE.domain]: LEN }, (f, r) => {
            if (f === NODE.opType) n.opType = r.string();
            else n.domain = r.string();
          });
          graph.nodes.push(n);
        }
      });
      model.graph = graph;
    }
  });
  return model;
}

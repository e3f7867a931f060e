/**
 * Runtime: compile a traced function once into an onnxruntime session, run it many times.
 *
 * The onnxruntime module is injected (`ort`): onnxruntime-node in Node, onnxruntime-web in browsers.
 * Both implement onnxruntime-common's API, so this file imports neither and runs in both. It does not
 * import the exporter either (onnx.ts and its protobuf library): a page that only runs ONNX bytes it
 * fetched stays small. Tracing and compiling in one call is `compile` (compile.ts).
 */
import type * as OrtCommon from 'onnxruntime-common';
import type { DType, Dim, OnnxModelInfo } from './graph.ts';

export type OrtModule = Pick<typeof OrtCommon, 'InferenceSession' | 'Tensor' | 'env'> & {
  listSupportedBackends?: () => { name: string; bundled: boolean }[];
};

export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu' | 'wasm';

export interface RuntimeOptions {
  /** Execution provider; `cpu` (Node) / `wasm` (browser) by default. */
  executionProvider?: ExecutionProvider;
  /** Intra-op threads; default: all cores (whatever the host reports). */
  threads?: number;
  /** Graph optimisation level passed to onnxruntime. */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'all';
  /**
   * onnxruntime's memory pattern (default on): one block laid out from the first run's allocations and reused by
   * later runs. Off, tensors come from the arena one by one: the mnist-28 training step peaks at about half the
   * memory (see TrainStep).
   */
  memPattern?: boolean;
  /** Least severity of onnxruntime's own log lines for the session (default: onnxruntime's, i.e. `ort.env.logLevel`). */
  logLevel?: LogLevel;
  /** Outputs to leave on the device (onnxruntime-web's WebGPU: 'gpu-buffer'); read them with the session, not `run`. */
  outputLocation?: Record<string, 'cpu' | 'gpu-buffer'>;
  /**
   * Whether onnxruntime's intra-op threads spin while they wait for work (default: onnxruntime's, on). Off they
   * sleep, which costs a little per op but leaves the cores to other threads between ops (a server's event loop).
   * Results are the same either way.
   */
  spinning?: boolean;
}

export type LogLevel = 'verbose' | 'info' | 'warning' | 'error' | 'fatal';
const LOG_SEVERITY: Record<LogLevel, 0 | 1 | 2 | 3 | 4> = { verbose: 0, info: 1, warning: 2, error: 3, fatal: 4 };

/**
 * An onnxruntime error message as one plain line: terminal colour codes removed, the first line only, without the
 * source location and failed condition of ORT_ENFORCE ("/onnxruntime_src/...cc:136 f() cond was false. <message>").
 */
export function conciseOrtMessage(msg: string): string {
  let line = msg.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').trim().split('\n')[0]!.trim();
  line = line.replace(/^\[ONNXRuntimeError\] : \d+ : [A-Z_]+ : /, '');
  // at the start, or after "Status Message: " in a run-time error ("Non-zero status code returned while running ...")
  return line.replace(/(^|\s)\S+:\d+ .*? was false\. /, '$1');
}

export type FeedValue = Float32Array | BigInt64Array | Int32Array | Uint8Array;
export type Feeds = Record<string, FeedValue>;
export type Results = Record<string, { data: Float32Array | BigInt64Array | Uint8Array; dims: number[] }>;

const ORT_TYPE: Record<DType, 'float32' | 'int64' | 'bool'> = { float32: 'float32', int64: 'int64', bool: 'bool' };

function defaultThreads(): number {
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  return nav?.hardwareConcurrency ?? 0; // 0 lets onnxruntime pick (its default: physical cores)
}

/** Throws a clear error when `ep` is not part of this onnxruntime build. */
export function checkExecutionProvider(ort: OrtModule, ep: ExecutionProvider): void {
  if (!ort.listSupportedBackends) return; // onnxruntime-web: availability shows at session creation
  const list = ort.listSupportedBackends();
  const hit = list.find((b) => b.name === ep);
  if (!hit) {
    throw new Error(`execution provider '${ep}' is not available in this onnxruntime build (available: ${list.map((b) => b.name).join(', ')})`);
  }
}

/** A compiled function: one onnxruntime session with named inputs and outputs. */
export class CompiledFunction {
  private constructor(
    readonly session: OrtCommon.InferenceSession,
    readonly info: OnnxModelInfo,
    readonly onnxBytes: Uint8Array,
    private readonly ort: OrtModule,
    readonly executionProvider: ExecutionProvider,
  ) {}

  /** Create a session from ONNX bytes. */
  static async fromOnnx(ort: OrtModule, bytes: Uint8Array, info: OnnxModelInfo, opts: RuntimeOptions = {}): Promise<CompiledFunction> {
    const ep = opts.executionProvider ?? (ort.listSupportedBackends ? 'cpu' : 'wasm');
    checkExecutionProvider(ort, ep);
    const threads = opts.threads ?? defaultThreads();
    let session: OrtCommon.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, {
        executionProviders: [ep],
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        graphOptimizationLevel: opts.graphOptimizationLevel ?? 'all',
        executionMode: 'sequential',
        ...(opts.memPattern !== undefined ? { enableMemPattern: opts.memPattern } : {}),
        ...(opts.logLevel ? { logSeverityLevel: LOG_SEVERITY[opts.logLevel] } : {}),
        ...(opts.outputLocation ? { preferredOutputLocation: opts.outputLocation } : {}),
        ...(opts.spinning === false ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
      });
    } catch (e) {
      const msg = conciseOrtMessage(e instanceof Error ? e.message : String(e));
      const hint =
        ep === 'cuda' ? ' (CUDA is opt-in: see the README section "GPU"; it needs NVIDIA drivers and the onnxruntime CUDA binaries)'
        : ep === 'webgpu' ? ' (WebGPU needs a GPU and drivers; use --ep cpu otherwise)'
        : '';
      throw new Error(`could not create an onnxruntime session on '${ep}'${hint}: ${msg}`);
    }
    return new CompiledFunction(session, info, bytes, ort, ep);
  }

  /** Resolve symbolic dims of one input from its data length. */
  private dimsOf(name: string, shape: readonly Dim[], length: number): number[] {
    let known = 1;
    let sym = -1;
    shape.forEach((d, i) => {
      if (typeof d === 'number') known *= d;
      else if (sym >= 0) throw new Error(`input '${name}': more than one symbolic dim in [${shape}]`);
      else sym = i;
    });
    if (sym < 0) {
      if (known !== length) throw new Error(`input '${name}': expected ${known} values for shape [${shape}], got ${length}`);
      return shape as number[];
    }
    if (known === 0 || length % known !== 0) throw new Error(`input '${name}': ${length} values do not fit shape [${shape}]`);
    return shape.map((d) => (typeof d === 'number' ? d : length / known));
  }

  /** Run with inputs bound by name; returns every output by name. */
  async run(feeds: Feeds): Promise<Results> {
    const ortFeeds: Record<string, OrtCommon.Tensor> = {};
    for (const inp of this.info.inputs) {
      const v = feeds[inp.name];
      if (v === undefined) throw new Error(`missing input '${inp.name}' (expected ${inp.dtype} [${inp.shape}])`);
      const dims = this.dimsOf(inp.name, inp.shape, v.length);
      let data: FeedValue = v;
      if (inp.dtype === 'int64' && !(v instanceof BigInt64Array)) data = BigInt64Array.from(v as Int32Array, (x) => BigInt(x));
      if (inp.dtype === 'float32' && !(v instanceof Float32Array)) throw new Error(`input '${inp.name}' must be a Float32Array`);
      ortFeeds[inp.name] = new this.ort.Tensor(ORT_TYPE[inp.dtype], data as Float32Array, dims);
    }
    for (const k of Object.keys(feeds)) {
      if (!this.info.inputs.some((i) => i.name === k)) throw new Error(`unknown input '${k}' (inputs: ${this.info.inputs.map((i) => i.name).join(', ')})`);
    }
    const out = await this.session.run(ortFeeds);
    const res: Results = {};
    for (const o of this.info.outputs) {
      const t = out[o.name]!;
      res[o.name] = { data: t.data as Float32Array, dims: [...t.dims] };
    }
    return res;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * The compiled training step: (params, optState, inputs, lr) -> (loss, params', optState'), traced once,
 * differentiated, and run as ONE onnxruntime session call per step.
 *
 * Graph input / output names: params `p:<path>`, Adam moments `m:<path>` / `v:<path>`, the step
 * counter `step`, the learning rate `lr`, data inputs by their own names; with an EMA kept in the step, its
 * values `ema:<path>` and decay `emaDecay`; outputs `loss`, `gradNorm`, `aux:<name>`, and the updated state
 * under `new:<input name>`.
 *
 * On onnxruntime-web's WebGPU the state stays on the device: the step's `new:*` outputs are left in GPU buffers
 * and fed back as the next step's inputs, and only the loss, the gradient norm and the aux scalars come back
 * each step; `sync()` reads the state into `params` / `state` / the EMA when they are wanted.
 */
import { valueAndGrad } from './autodiff.ts';
import { numel, type DType, type Dim } from './graph.ts';
import { clipByGlobalNorm, globalNorm, type Optimizer, type OptimizerState } from './optim.ts';
import { compile } from './compile.ts';
import type * as OrtCommon from 'onnxruntime-common';
import type { CompiledFunction, Feeds, OrtModule, RuntimeOptions } from './runtime.ts';
import { Tensor, add, concat, expand, input, mul, reshape, split, sub } from './tensor.ts';
import { treeFlatten, treeMap, type ParamValue, type Tree } from './tree.ts';

export interface TrainStepSpec<I extends Record<string, Tensor>> {
  /** Initial parameter values; the tree's paths name the weights. */
  params: Tree<ParamValue>;
  /** Data inputs (batch, noise, timesteps, ...), fixed shapes. */
  inputs: Record<keyof I & string, { shape: Dim[]; dtype?: DType }>;
  /** The scalar loss; may also return named auxiliary scalars to report. */
  loss: (params: Tree<Tensor>, inputs: I) => Tensor | { loss: Tensor; aux: Record<string, Tensor> };
  optimizer: Optimizer;
  /** Global-norm gradient clipping (off when undefined). */
  clipNorm?: number;
  /**
   * Learning-rate multipliers by parameter path (1 for the others), e.g. a new embedding that must move faster than
   * the fine-tuned weights around it. The graph is the plain one when every multiplier is 1.
   */
  lrScale?: Record<string, number>;
  /**
   * An EMA of the weights kept by the step itself, by parameter path: each step computes
   * ema' = d·ema + (1 − d)·params' with the decay d given to `step()`, and writes the values back into these
   * objects (on `sync()` when the state stays on the device). Default: none (the caller keeps its EMA).
   */
  ema?: Map<string, ParamValue>;
}

export interface StepResult {
  loss: number;
  gradNorm: number;
  aux: Record<string, number>;
}

/**
 * Whether a step on `ort` with `runtime` keeps its state on the device: onnxruntime-web's WebGPU (told from
 * onnxruntime-node by its lack of listSupportedBackends). onnxruntime-node's WebGPU is not verified to feed GPU
 * outputs back as inputs, so there the state comes back every step.
 */
export function stateOnDevice(ort: OrtModule, runtime: RuntimeOptions): boolean {
  return runtime.executionProvider === 'webgpu' && !ort.listSupportedBackends;
}

/** Holds the parameter and optimiser buffers and the compiled step; one `step()` = one session run. */
export class TrainStep {
  /** the state on the device by input name (WebGPU, after the first step): newer than the maps until `sync()` */
  private device: Map<string, OrtCommon.Tensor> | null = null;
  private synced = true;

  private constructor(
    readonly fn: CompiledFunction,
    public params: Map<string, ParamValue>,
    public state: Map<string, ParamValue>,
    private readonly auxNames: string[],
    private readonly ort: OrtModule,
    /** the EMA kept by the step, by input name `ema:<path>` (the objects given in the spec) */
    private readonly ema: Map<string, ParamValue> | null,
    /** whether the state stays on the device between steps */
    readonly onDevice: boolean,
  ) {}

  static async create<I extends Record<string, Tensor>>(ort: OrtModule, spec: TrainStepSpec<I>, runtime: RuntimeOptions = {}): Promise<TrainStep> {
    const paramTensors = treeMap(spec.params, (p, path) => input(`p:${path}`, p.shape));
    const state0 = spec.optimizer.init(spec.params);
    const stateTensors: OptimizerState<Tensor> = {
      step: input('step', []),
      m: treeMap(state0.m, (p, path) => input(`m:${path}`, p.shape)),
      v: treeMap(state0.v, (p, path) => input(`v:${path}`, p.shape)),
    };
    const dataInputs = {} as Record<string, Tensor>;
    for (const [name, s] of Object.entries(spec.inputs) as [string, { shape: Dim[]; dtype?: DType }][]) {
      dataInputs[name] = input(name, s.shape, s.dtype ?? 'float32');
    }
    const lr = input('lr', []);

    // 1. loss and gradients
    let auxOut: Record<string, Tensor> = {};
    const { value: loss, grads: rawGrads } = valueAndGrad((p: Tree<Tensor>) => {
      const out = spec.loss(p, dataInputs as I);
      if (out instanceof Tensor) return out;
      auxOut = out.aux;
      return out.loss;
    })(paramTensors);
    // 2. clipping, 3. optimiser update, on every parameter packed into ONE vector: a per-tensor update
    // costs ~15 graph nodes per tensor (thousands for a U-Net) whose per-node overhead far outweighs
    // packing and unpacking (a concat and a split). Optimisers must treat every element alike.
    const leaves = treeFlatten(paramTensors);
    const pack = (tree: Tree<Tensor>): { all: Tensor } => {
      const byPath = new Map(treeFlatten(tree));
      return { all: concat(leaves.map(([path]) => reshape(byPath.get(path)!, [-1])), 0) };
    };
    // onnxruntime-web's WebGPU Slice runs a thread per element of its input: there, a tree of at most 7-way
    // splits cuts the vector in a few passes instead of one pass over it per parameter
    const fanOut = runtime.executionProvider === 'webgpu' ? 7 : Infinity;
    const unpack = (packed: Tree<Tensor>, prefix: string, outputs: Record<string, Tensor>): void => {
      const parts = splitTree((packed as { all: Tensor }).all, leaves.map(([, t]) => numel(t.shape)), fanOut);
      leaves.forEach(([path, t], i) => (outputs[`${prefix}${path}`] = reshape(parts[i]!, t.shape)));
    };
    const packedGrads = pack(rawGrads);
    const { grads, norm } = spec.clipNorm !== undefined ? clipByGlobalNorm(packedGrads, spec.clipNorm) : { grads: packedGrads, norm: globalNorm(packedGrads) };
    const updated = spec.optimizer.update(grads, { step: stateTensors.step, m: pack(stateTensors.m), v: pack(stateTensors.v) }, pack(paramTensors), packedLr(lr, leaves, spec.lrScale));

    const outputs: Record<string, Tensor> = { loss, gradNorm: norm };
    for (const [k, t] of Object.entries(auxOut)) outputs[`aux:${k}`] = t;
    unpack(updated.params, 'new:p:', outputs);
    outputs['new:step'] = updated.state.step;
    unpack(updated.state.m, 'new:m:', outputs);
    unpack(updated.state.v, 'new:v:', outputs);
    if (spec.ema) {
      const d = input('emaDecay', []);
      const ema = pack(treeMap(spec.params, (p, path) => input(`ema:${path}`, p.shape))).all;
      unpack({ all: add(mul(ema, d), mul((updated.params as { all: Tensor }).all, sub(1, d))) }, 'new:ema:', outputs);
    }
    const onDevice = stateOnDevice(ort, runtime);
    const outputLocation = onDevice ? Object.fromEntries(Object.keys(outputs).filter((k) => k.startsWith('new:')).map((k) => [k, 'gpu-buffer' as const])) : undefined;
    // memory pattern off: the mnist-28 step at batch 64 peaks at 1.26 GB RSS instead of 2.3 GB (bench:unet), no slower
    const fn = await compile(ort, outputs, { memPattern: false, ...runtime, ...(outputLocation ? { outputLocation } : {}) });

    const params = new Map(treeFlatten(spec.params).map(([k, v]) => [`p:${k}`, { shape: [...v.shape], data: v.data.slice() }]));
    const state = new Map<string, ParamValue>([['step', state0.step]]);
    for (const [k, v] of treeFlatten(state0.m)) state.set(`m:${k}`, v);
    for (const [k, v] of treeFlatten(state0.v)) state.set(`v:${k}`, v);
    const ema = spec.ema ? new Map([...treeFlatten(spec.params)].map(([k]) => [`ema:${k}`, spec.ema!.get(k)!])) : null;
    if (ema && [...ema.values()].some((v) => v === undefined)) throw new Error('TrainStep: the EMA lacks a parameter');
    return new TrainStep(fn, params, state, Object.keys(auxOut), ort, ema, onDevice);
  }

  /** Whether the step updates an EMA itself (then `step()` takes its decay). */
  get keepsEma(): boolean {
    return this.ema !== null;
  }

  /** Every state value (parameters, optimiser state, EMA) by its graph input name. */
  private stateEntries(): [string, ParamValue][] {
    return [...this.params, ...this.state, ...(this.ema ?? [])];
  }

  /**
   * One optimisation step on a batch (`emaDecay`: the decay of the EMA the step keeps, if it keeps one). Throws
   * (and keeps the old weights) if the loss is not finite.
   */
  async step(batch: Feeds, lr: number, emaDecay?: number): Promise<StepResult> {
    if (this.ema && emaDecay === undefined) throw new Error('TrainStep.step: this step keeps an EMA: give its decay');
    const feeds: Feeds = { ...batch, lr: new Float32Array([lr]) };
    if (this.ema) feeds.emaDecay = new Float32Array([emaDecay!]);
    if (this.onDevice) return this.stepOnDevice(feeds);
    for (const [k, v] of this.stateEntries()) feeds[k] = v.data;
    const out = await this.fn.run(feeds);
    const res = this.result(out as unknown as Record<string, { data: unknown }>);
    for (const [k, v] of this.stateEntries()) v.data = out[`new:${k}`]!.data as Float32Array;
    return res;
  }

  /** The step's scalars; NonFiniteLossError when the loss or the gradient norm is not finite. */
  private result(out: Record<string, { data: unknown }>): StepResult {
    const loss = (out.loss!.data as Float32Array)[0]!;
    const gradNorm = (out.gradNorm!.data as Float32Array)[0]!;
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      throw new NonFiniteLossError(`non-finite loss (${loss}) or gradient norm (${gradNorm}); the update was not applied`);
    }
    const aux: Record<string, number> = {};
    for (const k of this.auxNames) aux[k] = (out[`aux:${k}`]!.data as Float32Array)[0]!;
    return { loss, gradNorm, aux };
  }

  /** A step whose state comes from (and goes back to) the device; the first one uploads it from the maps. */
  private async stepOnDevice(feeds: Feeds): Promise<StepResult> {
    const values = new Map(this.stateEntries());
    const inputs: Record<string, OrtCommon.Tensor> = {};
    for (const inp of this.fn.info.inputs) {
      const held = this.device?.get(inp.name);
      if (held) {
        inputs[inp.name] = held;
        continue;
      }
      const data = feeds[inp.name] ?? values.get(inp.name)?.data;
      if (data === undefined) throw new Error(`missing input '${inp.name}' (expected ${inp.dtype} [${inp.shape}])`);
      const dims = inp.shape as number[];
      if (data.length !== numel(dims)) throw new Error(`input '${inp.name}': expected ${numel(dims)} values for shape [${dims}], got ${data.length}`);
      inputs[inp.name] = new this.ort.Tensor(inp.dtype, data as Float32Array, dims);
    }
    const out = await this.fn.session.run(inputs);
    const next = new Map([...values.keys()].map((k) => [k, out[`new:${k}`]!]));
    let res: StepResult;
    try {
      res = this.result(out);
    } catch (e) {
      for (const t of next.values()) t.dispose();
      throw e;
    }
    for (const t of this.device?.values() ?? []) t.dispose();
    this.device = next;
    this.synced = false;
    return res;
  }

  /** Whether the device holds a newer state than `params`, `state` and the EMA (until `sync()`). */
  get stale(): boolean {
    return !this.synced;
  }

  /** Where the state lives: the number of state tensors in each location ('cpu' before the first device step). */
  stateLocations(): Record<string, number> {
    const count: Record<string, number> = {};
    if (!this.device) count.cpu = this.stateEntries().length;
    else for (const t of this.device.values()) count[t.location] = (count[t.location] ?? 0) + 1;
    return count;
  }

  /** Read the state from the device into `params`, `state` and the EMA (nothing to do when it is not on one). */
  async sync(): Promise<void> {
    if (this.synced || !this.device) return;
    const values = new Map(this.stateEntries());
    for (const [k, t] of this.device) values.get(k)!.data = (await t.getData()) as Float32Array;
    this.synced = true;
  }

  /** Current parameters keyed by their tree path (without the `p:` prefix). */
  paramsByPath(): Map<string, ParamValue> {
    if (!this.synced) throw new Error('TrainStep.paramsByPath: the state is on the device: sync() first');
    return new Map([...this.params].map(([k, v]) => [k.slice(2), v]));
  }

  async release(): Promise<void> {
    for (const t of this.device?.values() ?? []) t.dispose();
    this.device = null;
    await this.fn.release();
  }
}

/** `split(x, 0, sizes)` as a tree of splits with at most `fanOut` pieces each (the same values). */
function splitTree(x: Tensor, sizes: readonly number[], fanOut: number): Tensor[] {
  if (sizes.length <= fanOut) return split(x, 0, sizes);
  const per = Math.ceil(sizes.length / fanOut);
  const groups: number[][] = [];
  for (let i = 0; i < sizes.length; i += per) groups.push(sizes.slice(i, i + per));
  const parts = split(x, 0, groups.map((g) => g.reduce((a, b) => a + b, 0)));
  return groups.flatMap((g, i) => splitTree(parts[i]!, g, fanOut));
}

/**
 * The learning rate of every packed element: the scalar `lr` when no multiplier differs from 1, else a vector of
 * lr·scale, one run of equal values per group of consecutive parameters with the same scale.
 */
function packedLr(lr: Tensor, leaves: [string, Tensor][], lrScale: Record<string, number> = {}): Tensor {
  for (const [path, k] of Object.entries(lrScale)) {
    if (!leaves.some(([p]) => p === path)) throw new Error(`lrScale: no parameter '${path}'`);
    if (!(Number.isFinite(k) && k >= 0)) throw new Error(`lrScale: '${path}' must be a finite number >= 0, got ${k}`);
  }
  if (Object.values(lrScale).every((k) => k === 1)) return lr;
  const runs: { scale: number; n: number }[] = [];
  for (const [path, t] of leaves) {
    const scale = lrScale[path] ?? 1;
    const last = runs.at(-1);
    if (last && last.scale === scale) last.n += numel(t.shape);
    else runs.push({ scale, n: numel(t.shape) });
  }
  return concat(runs.map(({ scale, n }) => expand(reshape(scale === 1 ? lr : mul(lr, scale), [1]), [n])), 0);
}

export class NonFiniteLossError extends Error {
  override name = 'NonFiniteLossError';
}

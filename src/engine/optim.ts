/**
 * Optimisers, written as traced tensor code so the update runs inside the compiled training step.
 *
 * Pure style (as optax / jax-js): `init(params) -> state` on numbers, `update(grads, state, params, lr)
 * -> { params, state }` on tensors. The learning rate is a graph input, so a schedule needs no recompile.
 *
 * Adam: Kingma & Ba 2015, Algorithm 1 (with bias correction). AdamW: Loshchilov & Hutter 2019
 * (decoupled weight decay, applied as p ← p − lr·λ·p, matching torch.optim.AdamW).
 */
import { add, div, exp, minimum, mul, scalar, sqrt, sub, sum, type Tensor } from './tensor.ts';
import { treeFlatten, treeFromFlat, treeMap, type ParamValue, type Tree } from './tree.ts';

export interface OptimizerState<T> {
  /** number of updates applied so far (a float32 scalar, for bias correction) */
  step: T;
  m: Tree<T>;
  v: Tree<T>;
}

export interface AdamConfig {
  b1?: number;
  b2?: number;
  eps?: number;
  weightDecay?: number;
  /** true: AdamW (decoupled decay); false: Adam with L2 decay added to the gradient */
  decoupled?: boolean;
}

export interface Optimizer {
  readonly config: Required<AdamConfig>;
  init(params: Tree<ParamValue>): OptimizerState<ParamValue>;
  /** Must treat every element alike: the training step runs it once on all parameters packed into one vector. */
  update(grads: Tree<Tensor>, state: OptimizerState<Tensor>, params: Tree<Tensor>, lr: Tensor): { params: Tree<Tensor>; state: OptimizerState<Tensor> };
}

function zerosLike(p: ParamValue): ParamValue {
  return { shape: [...p.shape], data: new Float32Array(p.data.length) };
}

export function adam(cfg: AdamConfig = {}): Optimizer {
  const config: Required<AdamConfig> = { b1: 0.9, b2: 0.999, eps: 1e-8, weightDecay: 0, decoupled: false, ...cfg };
  const { b1, b2, eps, weightDecay, decoupled } = config;
  if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw new Error(`adam: betas must be in [0, 1), got ${b1}, ${b2}`);
  if (!(eps > 0) || !(weightDecay >= 0)) throw new Error(`adam: eps must be > 0 and weightDecay >= 0`);
  return {
    config,
    init: (params) => ({
      step: { shape: [], data: new Float32Array(1) },
      m: treeMap(params, zerosLike),
      v: treeMap(params, zerosLike),
    }),
    update(grads, state, params, lr) {
      const t = add(state.step, 1);
      // bias corrections 1 − β^t, with β^t = exp(t·ln β) so t can stay a tensor
      const bc1 = sub(1, exp(mul(t, Math.log(b1))));
      const bc2 = sub(1, exp(mul(t, Math.log(b2))));
      const stepSize = div(lr, bc1);
      const sqrtBc2 = sqrt(bc2);
      const flatP = new Map(treeFlatten(params));
      const flatM = new Map(treeFlatten(state.m));
      const flatV = new Map(treeFlatten(state.v));
      const newP = new Map<string, Tensor>();
      const newM = new Map<string, Tensor>();
      const newV = new Map<string, Tensor>();
      for (const [path, g0] of treeFlatten(grads)) {
        const p = flatP.get(path)!;
        let g = g0;
        if (weightDecay > 0 && !decoupled) g = add(g, mul(p, weightDecay));
        const m = add(mul(flatM.get(path)!, b1), mul(g, 1 - b1));
        const v = add(mul(flatV.get(path)!, b2), mul(mul(g, g), 1 - b2));
        const denom = add(div(sqrt(v), sqrtBc2), eps);
        let pNew = weightDecay > 0 && decoupled ? sub(p, mul(p, mul(lr, weightDecay))) : p;
        pNew = sub(pNew, mul(stepSize, div(m, denom)));
        newP.set(path, pNew);
        newM.set(path, m);
        newV.set(path, v);
      }
      return {
        params: treeFromFlat(params, newP),
        state: { step: t, m: treeFromFlat(state.m, newM), v: treeFromFlat(state.v, newV) },
      };
    },
  };
}

export function adamw(cfg: Omit<AdamConfig, 'decoupled'> = {}): Optimizer {
  return adam({ weightDecay: 0.01, ...cfg, decoupled: true });
}

/** ‖g‖₂ over every leaf of the gradient tree. */
export function globalNorm(grads: Tree<Tensor>): Tensor {
  let total: Tensor | null = null;
  for (const [, g] of treeFlatten(grads)) {
    const s = sum(mul(g, g));
    total = total ? add(total, s) : s;
  }
  return sqrt(total ?? scalar(0));
}

/** Scale the gradients so their global norm is at most `maxNorm` (torch.nn.utils.clip_grad_norm_). */
export function clipByGlobalNorm(grads: Tree<Tensor>, maxNorm: number): { grads: Tree<Tensor>; norm: Tensor } {
  if (!(maxNorm > 0)) throw new Error(`clipByGlobalNorm: maxNorm must be > 0, got ${maxNorm}`);
  const norm = globalNorm(grads);
  const scale = minimum(div(maxNorm, add(norm, 1e-6)), 1);
  return { grads: treeMap(grads, (g) => mul(g, scale)), norm };
}

/** Shapes of the learning-rate decay: none (constant lr), linear, or cosine (half period). */
export const LR_DECAYS = ['none', 'linear', 'cosine'] as const;

/** A learning-rate schedule: linear warmup, constant, then an optional decay (a "cooldown"). */
export interface LrSchedule {
  /** peak learning rate */
  lr: number;
  /** linear warmup from lr/warmupSteps to lr over the first warmupSteps steps (0 = none) */
  warmupSteps: number;
  /** shape of the decay (LR_DECAYS) */
  decay: (typeof LR_DECAYS)[number];
  /** step at which the decay starts */
  decayStart: number;
  /** steps the decay takes to reach decayTo (0 = none); the lr stays at decayTo afterwards */
  decaySteps: number;
  /** learning rate at the end of the decay */
  decayTo: number;
}

/** The learning rate of update `step` (0-based) under a warmup + constant + decay schedule. */
export function learningRate(s: LrSchedule, step: number): number {
  let lr = s.lr;
  if (s.decay !== 'none' && s.decaySteps > 0 && step >= s.decayStart) {
    const f = Math.min(1, (step - s.decayStart) / s.decaySteps);
    const w = s.decay === 'linear' ? 1 - f : 0.5 * (1 + Math.cos(Math.PI * f));
    lr = s.decayTo + (s.lr - s.decayTo) * w;
  }
  return s.warmupSteps > 0 ? lr * Math.min(1, (step + 1) / s.warmupSteps) : lr;
}

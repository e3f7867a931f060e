/**
 * The DDPM U-Net (Ho et al. 2020, appendix B; PixelCNN++-style backbone with group norm, sinusoidal
 * timestep embeddings and self-attention at low resolution), as traced engine code.
 *
 * The model knows nothing about diffusion: it maps (x_t, t) to an output with `outChannels` channels
 * (ε, x0 or v; twice the channels when the variance is learned).
 *
 * Parameter names mirror the PyTorch reference (`../shared/peer/torch_unet.py`) state_dict keys, and
 * Linear weights are stored [out, in] as torch does, so a checkpoint loads into either implementation.
 */
import type { ParamValue } from '../engine/optim.ts';
import {
  add,
  concat,
  conv2d,
  cos,
  div,
  dropout as dropoutOp,
  exp,
  groupNorm,
  matmul,
  mul,
  reshape,
  scalar,
  silu,
  sin,
  slice,
  softmax,
  transpose,
  upsampleNearest2x,
  constant,
  type Tensor,
} from '../engine/tensor.ts';
import type { Rng } from '../rng.ts';
import type { Dim } from '../engine/graph.ts';

export interface UNetConfig {
  imageSize: number;
  inChannels: number;
  /** output channels; default inChannels (2× for a learned variance) */
  outChannels: number;
  baseChannels: number;
  channelMults: number[];
  numResBlocks: number;
  /** resolutions (feature-map sizes) that get self-attention */
  attnResolutions: number[];
  groups: number;
  dropout: number;
}

/** The reference config `mnist-28` (1,623,169 parameters). */
export const MNIST_28: UNetConfig = {
  imageSize: 28,
  inChannels: 1,
  outChannels: 1,
  baseChannels: 32,
  channelMults: [1, 2, 2],
  numResBlocks: 2,
  attnResolutions: [7],
  groups: 8,
  dropout: 0,
};

export const UNET_CONFIGS: Record<string, UNetConfig> = {
  'mnist-28': MNIST_28,
  /** a tiny config for tests and smoke runs */
  tiny: { imageSize: 8, inChannels: 1, outChannels: 1, baseChannels: 8, channelMults: [1, 2], numResBlocks: 1, attnResolutions: [4], groups: 4, dropout: 0 },
};

/** Validate a (possibly partial, possibly parsed-from-JSON) config against the defaults; unknown keys are an error. */
export function unetConfig(partial: Partial<UNetConfig> = {}, base: UNetConfig = MNIST_28): UNetConfig {
  for (const k of Object.keys(partial)) {
    if (!(k in base)) throw new Error(`unknown U-Net config key '${k}' (known: ${Object.keys(base).join(', ')})`);
  }
  const c = { ...base, ...partial } as UNetConfig;
  if (partial.inChannels !== undefined && partial.outChannels === undefined) c.outChannels = c.inChannels;
  const posInt = (v: number, name: string) => {
    if (!Number.isInteger(v) || v < 1) throw new Error(`U-Net config: ${name} must be a positive integer, got ${v}`);
  };
  posInt(c.imageSize, 'imageSize');
  posInt(c.inChannels, 'inChannels');
  posInt(c.outChannels, 'outChannels');
  posInt(c.baseChannels, 'baseChannels');
  posInt(c.numResBlocks, 'numResBlocks');
  posInt(c.groups, 'groups');
  if (!Array.isArray(c.channelMults) || c.channelMults.length === 0) throw new Error('U-Net config: channelMults must be a non-empty array');
  c.channelMults.forEach((m) => posInt(m, 'channelMults[i]'));
  if (!(c.dropout >= 0 && c.dropout < 1)) throw new Error(`U-Net config: dropout must be in [0, 1), got ${c.dropout}`);
  if (c.imageSize % 2 ** (c.channelMults.length - 1) !== 0) {
    throw new Error(`U-Net config: imageSize ${c.imageSize} is not divisible by 2^${c.channelMults.length - 1} (one halving per extra level)`);
  }
  for (const m of [1, ...c.channelMults]) {
    if ((c.baseChannels * m) % c.groups !== 0) throw new Error(`U-Net config: channels ${c.baseChannels * m} not divisible by ${c.groups} groups`);
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Architecture as a list of modules, shared by the initialiser and the forward pass.

type ResSpec = { kind: 'res'; cin: number; cout: number };
type AttnSpec = { kind: 'attn'; c: number };
type DownSpec = { kind: 'down'; c: number };
type UpSpec = { kind: 'up'; c: number };
type Spec = ResSpec | AttnSpec | DownSpec | UpSpec;

interface Layout {
  down: Spec[];
  mid: Spec[];
  up: Spec[];
  outC: number;
}

function layout(cfg: UNetConfig): Layout {
  const ch = cfg.baseChannels;
  const down: Spec[] = [];
  const chans = [ch];
  let c = ch;
  let r = cfg.imageSize;
  cfg.channelMults.forEach((m, i) => {
    for (let k = 0; k < cfg.numResBlocks; k++) {
      down.push({ kind: 'res', cin: c, cout: ch * m });
      c = ch * m;
      if (cfg.attnResolutions.includes(r)) down.push({ kind: 'attn', c });
      chans.push(c);
    }
    if (i !== cfg.channelMults.length - 1) {
      down.push({ kind: 'down', c });
      chans.push(c);
      r /= 2;
    }
  });
  const mid: Spec[] = [{ kind: 'res', cin: c, cout: c }, { kind: 'attn', c }, { kind: 'res', cin: c, cout: c }];
  const up: Spec[] = [];
  for (let i = cfg.channelMults.length - 1; i >= 0; i--) {
    const m = cfg.channelMults[i]!;
    for (let k = 0; k < cfg.numResBlocks + 1; k++) {
      up.push({ kind: 'res', cin: c + chans.pop()!, cout: ch * m });
      c = ch * m;
      if (cfg.attnResolutions.includes(r)) up.push({ kind: 'attn', c });
    }
    if (i !== 0) {
      up.push({ kind: 'up', c });
      r *= 2;
    }
  }
  return { down, mid, up, outC: c };
}

// ---------------------------------------------------------------------------------------------
// Initialisation: PyTorch's defaults (kaiming_uniform(a=√5) ⇒ U(±1/√fan_in) for weights and biases;
// GroupNorm scale 1, shift 0), so the equal-budget comparison with the PyTorch peer is fair.

type Params = Record<string, ParamValue>;

function uniformParam(rng: Rng, shape: number[], bound: number): ParamValue {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = rng.uniformFloat32(n);
  for (let i = 0; i < n; i++) data[i] = (data[i]! * 2 - 1) * bound;
  return { shape, data };
}

function initConv(p: Params, name: string, rng: Rng, cin: number, cout: number, k: number): void {
  const bound = 1 / Math.sqrt(cin * k * k);
  p[`${name}.weight`] = uniformParam(rng, [cout, cin, k, k], bound);
  p[`${name}.bias`] = uniformParam(rng, [cout], bound);
}

function initLinear(p: Params, name: string, rng: Rng, cin: number, cout: number): void {
  const bound = 1 / Math.sqrt(cin);
  p[`${name}.weight`] = uniformParam(rng, [cout, cin], bound);
  p[`${name}.bias`] = uniformParam(rng, [cout], bound);
}

function initNorm(p: Params, name: string, c: number): void {
  p[`${name}.weight`] = { shape: [c], data: new Float32Array(c).fill(1) };
  p[`${name}.bias`] = { shape: [c], data: new Float32Array(c) };
}

function initSpec(p: Params, name: string, s: Spec, rng: Rng, tembDim: number): void {
  switch (s.kind) {
    case 'res':
      initNorm(p, `${name}.n1`, s.cin);
      initConv(p, `${name}.c1`, rng, s.cin, s.cout, 3);
      initLinear(p, `${name}.t`, rng, tembDim, s.cout);
      initNorm(p, `${name}.n2`, s.cout);
      initConv(p, `${name}.c2`, rng, s.cout, s.cout, 3);
      if (s.cin !== s.cout) initConv(p, `${name}.skip`, rng, s.cin, s.cout, 1);
      return;
    case 'attn':
      initNorm(p, `${name}.n`, s.c);
      initConv(p, `${name}.qkv`, rng, s.c, 3 * s.c, 1);
      initConv(p, `${name}.proj`, rng, s.c, s.c, 1);
      return;
    case 'down':
      initConv(p, name, rng, s.c, s.c, 3);
      return;
    case 'up':
      initConv(p, `${name}.1`, rng, s.c, s.c, 3); // index 1 of torch's Sequential(Upsample, Conv2d)
      return;
  }
}

/** Fresh parameters, keyed by torch-style names (e.g. `down.3.c1.weight`), in a fixed order. */
export function initUNet(cfg: UNetConfig, rng: Rng): Params {
  const p: Params = {};
  const ch = cfg.baseChannels;
  const tembDim = 4 * ch;
  const lay = layout(cfg);
  initLinear(p, 'temb.0', rng, ch, tembDim);
  initLinear(p, 'temb.2', rng, tembDim, tembDim);
  initConv(p, 'cin', rng, cfg.inChannels, ch, 3);
  lay.down.forEach((s, i) => initSpec(p, `down.${i}`, s, rng, tembDim));
  lay.mid.forEach((s, i) => initSpec(p, `mid.${i}`, s, rng, tembDim));
  lay.up.forEach((s, i) => initSpec(p, `up.${i}`, s, rng, tembDim));
  initNorm(p, 'out.0', lay.outC);
  initConv(p, 'out.2', rng, lay.outC, cfg.outChannels, 3);
  return p;
}

export function countParams(params: Record<string, ParamValue>): number {
  return Object.values(params).reduce((n, p) => n + p.data.length, 0);
}

// ---------------------------------------------------------------------------------------------
// Forward pass

/** Source of the uniform [0,1) tensors that drive dropout (graph inputs fed from the RNG). */
export type DropoutSource = (name: string, shape: readonly Dim[]) => Tensor;

/**
 * Sinusoidal timestep embedding (Vaswani et al. 2017, as in DDPM): [sin(t·f_i), cos(t·f_i)] with
 * f_i = exp(−ln(10000)·i/(half−1)), i = 0..half−1.
 */
export function timestepEmbedding(t: Tensor, dim: number): Tensor {
  const half = dim / 2;
  if (!Number.isInteger(half) || half < 2) throw new Error(`timestepEmbedding: dim must be even and >= 4, got ${dim}`);
  const freqs = constant(Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / (half - 1))), [1, half]);
  const args = mul(reshape(t, [t.shape[0]!, 1]), freqs); // (N, half)
  return concat([sin(args), cos(args)], 1); // (N, dim)
}

/**
 * ε_θ(x_t, t) (or whatever the model was trained to predict).
 * @param params tensors keyed like `initUNet`'s output
 * @param x (N, C, H, W) noisy images
 * @param t (N) timesteps as float32 (the model's own index, 0..T−1)
 * @param opts.dropoutSource needed when cfg.dropout > 0 and training
 */
export function unet(
  cfg: UNetConfig,
  params: Record<string, Tensor>,
  x: Tensor,
  t: Tensor,
  opts: { dropoutSource?: DropoutSource } = {},
): Tensor {
  const P = (name: string): Tensor => {
    const v = params[name];
    if (!v) throw new Error(`unet: missing parameter '${name}'`);
    return v;
  };
  if (x.rank !== 4 || x.shape[1] !== cfg.inChannels || x.shape[2] !== cfg.imageSize || x.shape[3] !== cfg.imageSize) {
    throw new Error(`unet: x must be [N, ${cfg.inChannels}, ${cfg.imageSize}, ${cfg.imageSize}], got [${x.shape}]`);
  }
  if (t.rank !== 1 || t.shape[0] !== x.shape[0]) throw new Error(`unet: t must be [N] matching x, got [${t.shape}] for x [${x.shape}]`);
  const lay = layout(cfg);
  const linear = (h: Tensor, name: string) => add(matmul(h, transpose(P(`${name}.weight`), [1, 0])), P(`${name}.bias`));
  const conv = (h: Tensor, name: string, opts: { stride?: number; padding?: number } = {}) =>
    conv2d(h, P(`${name}.weight`), P(`${name}.bias`), opts);
  const norm = (h: Tensor, name: string) => groupNorm(h, cfg.groups, P(`${name}.weight`), P(`${name}.bias`));
  let dropCount = 0;
  const drop = (h: Tensor): Tensor => {
    if (cfg.dropout === 0 || !opts.dropoutSource) return h;
    return dropoutOp(h, cfg.dropout, opts.dropoutSource(`dropout${dropCount++}`, h.shape));
  };

  // 1. timestep embedding: sinusoidal(ch) -> Linear -> SiLU -> Linear
  const temb = linear(silu(linear(timestepEmbedding(t, cfg.baseChannels), 'temb.0')), 'temb.2'); // (N, 4ch)
  const tembAct = silu(temb);

  const resBlock = (h: Tensor, name: string, s: ResSpec): Tensor => {
    let y = conv(silu(norm(h, `${name}.n1`)), `${name}.c1`, { padding: 1 });
    const tproj = linear(tembAct, `${name}.t`); // (N, cout)
    y = add(y, reshape(tproj, [tproj.shape[0]!, s.cout, 1, 1]));
    y = conv(drop(silu(norm(y, `${name}.n2`))), `${name}.c2`, { padding: 1 });
    const skip = s.cin !== s.cout ? conv(h, `${name}.skip`) : h;
    return add(skip, y);
  };

  const attnBlock = (h: Tensor, name: string, c: number): Tensor => {
    const [N, , H, W] = h.shape as [Dim, number, number, number];
    const hw = H * W;
    const qkv = reshape(conv(norm(h, `${name}.n`), `${name}.qkv`), [N, 3, c, hw]);
    const q = reshape(slice(qkv, 1, 0, 1), [N, c, hw]);
    const k = reshape(slice(qkv, 1, 1, 2), [N, c, hw]);
    const v = reshape(slice(qkv, 1, 2, 3), [N, c, hw]);
    // w[n,i,j] = Σ_c q[n,c,i] k[n,c,j] / √C, softmax over j (positions)
    const w = softmax(div(matmul(transpose(q, [0, 2, 1]), k), scalar(Math.sqrt(c))), -1); // (N, hw, hw)
    const o = matmul(v, transpose(w, [0, 2, 1])); // (N, c, hw): o[n,c,i] = Σ_j w[n,i,j] v[n,c,j]
    return add(h, conv(reshape(o, [N, c, H, W]), `${name}.proj`));
  };

  // 2. down path, pushing skips
  let h = conv(x, 'cin', { padding: 1 });
  const hs: Tensor[] = [h];
  lay.down.forEach((s, i) => {
    const name = `down.${i}`;
    if (s.kind === 'res') {
      h = resBlock(h, name, s);
      hs.push(h);
    } else if (s.kind === 'attn') {
      h = attnBlock(h, name, s.c);
      hs[hs.length - 1] = h; // the skip is taken after the attention
    } else {
      h = conv(h, name, { stride: 2, padding: 1 });
      hs.push(h);
    }
  });
  // 3. middle
  lay.mid.forEach((s, i) => {
    h = s.kind === 'res' ? resBlock(h, `mid.${i}`, s) : attnBlock(h, `mid.${i}`, (s as AttnSpec).c);
  });
  // 4. up path, consuming skips
  lay.up.forEach((s, i) => {
    const name = `up.${i}`;
    if (s.kind === 'res') h = resBlock(concat([h, hs.pop()!], 1), name, s);
    else if (s.kind === 'attn') h = attnBlock(h, name, s.c);
    else h = conv(upsampleNearest2x(h), `${name}.1`, { padding: 1 });
  });
  // 5. output
  return conv(silu(norm(h, 'out.0')), 'out.2', { padding: 1 });
}

// DPM-Solver++ (Lu et al. 2022, Algorithm 2) against closed forms. The golden values from diffusers'
// own tests are in diffusion-diffusers.test.ts.
//
// The exact model: for Gaussian data x_0 ~ N(μ, s² I), q(x_t) = N(√ᾱ_t μ, (ᾱ_t s² + 1 − ᾱ_t) I) and
// E[ε | x_t] = √(1 − ᾱ_t)(x_t − √ᾱ_t μ)/(ᾱ_t s² + 1 − ᾱ_t). The probability-flow ODE keeps the
// standardised value z = (x_t − √ᾱ_t μ)/√(ᾱ_t s² + 1 − ᾱ_t) constant, so its exact solution is known.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DdimSampler,
  DpmSolverSampler,
  GaussianDiffusion,
  dpmSolverTimesteps,
  sampleLoop,
  type DiffusionModel,
  type MeanType,
  type ShapedArray,
} from '../src/diffusion/index.ts';
import { Rng } from '../src/rng.ts';
import { assertClose } from './helpers.ts';

const base = GaussianDiffusion.fromConfig({ kind: 'linear' });
const MU = 0.3;
const S = 0.5;

/** The exact ε / x_0 / v of Gaussian data N(MU, S²) at the model's (original) timestep. */
function gaussianModel(meanType: MeanType, learnedRange = false): DiffusionModel {
  return (x, t) => {
    const a = base.alphasCumprod[t[0]];
    const v = a * S * S + 1 - a;
    const eps = x.map((xi) => (Math.sqrt(1 - a) * (xi - Math.sqrt(a) * MU)) / v);
    const x0 = x.map((xi, j) => (xi - Math.sqrt(1 - a) * eps[j]) / Math.sqrt(a));
    const out = meanType === 'epsilon' ? eps : meanType === 'x0' ? x0 : eps.map((e, j) => Math.sqrt(a) * e - Math.sqrt(1 - a) * x0[j]);
    if (!learnedRange) return out;
    const both = new Float32Array(2 * out.length); // [B = 1, 2C]: the mean half, then a variance half to ignore
    both.set(out);
    both.fill(0.7, out.length);
    return both;
  };
}

/** x at ᾱ_end on the exact ODE trajectory through x at ᾱ_start. */
function exactOde(x: Float32Array, abarStart: number, abarEnd: number): number[] {
  return Array.from(x, (xi) => {
    const z = (xi - Math.sqrt(abarStart) * MU) / Math.sqrt(abarStart * S * S + 1 - abarStart);
    return Math.sqrt(abarEnd) * MU + Math.sqrt(abarEnd * S * S + 1 - abarEnd) * z;
  });
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let j = 0; j < a.length; j++) m = Math.max(m, Math.abs(a[j] - b[j]));
  return m;
};

test('DPM-Solver++ timesteps: diffusers linspace / leading (N + 1 points, 0 dropped) and trailing', () => {
  assert.deepEqual(Array.from(dpmSolverTimesteps(1000, 10, 'linspace')), [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]);
  // leading: T div (N + 1) = 90
  assert.deepEqual(Array.from(dpmSolverTimesteps(1000, 10, 'leading')), [900, 810, 720, 630, 540, 450, 360, 270, 180, 90]);
  assert.deepEqual(Array.from(dpmSolverTimesteps(1000, 10, 'leading', 1)).slice(-2), [181, 91]);
  assert.deepEqual(Array.from(dpmSolverTimesteps(1000, 4, 'trailing')), [999, 749, 499, 249]);
  assert.throws(() => dpmSolverTimesteps(10, 10, 'linspace'), /repeat timestep/);
  assert.throws(() => dpmSolverTimesteps(10, 0, 'linspace'), /\[1, 10\]/);
});

test('DPM-Solver++(2M) converges at second order on the exact Gaussian model; order 1 (DDIM) at first order', async () => {
  // 999 → 199 in N equal steps of t; compare x at t = 199 (before the final jump) with the exact ODE
  const xT = new Rng(3).normalFloat32(16);
  const exact = exactOde(xT, base.alphasCumprod[999], base.alphasCumprod[199]);
  const err: Record<1 | 2, number[]> = { 1: [], 2: [] };
  for (const N of [10, 20, 40]) {
    const ts = Array.from({ length: N + 1 }, (_, k) => Math.round(999 - (k * 800) / N));
    for (const order of [1, 2] as const) {
      const sampler = new DpmSolverSampler(base, { meanType: 'epsilon', timesteps: ts, solverOrder: order, lowerOrderFinal: false });
      let at199: Float32Array | undefined;
      await sampleLoop(sampler, gaussianModel('epsilon'), [1, 16], new Rng(0), {
        noise: xT,
        onStep: (s) => void (s.step === N - 1 && (at199 = s.prevSample)),
      });
      err[order].push(maxAbsDiff(at199!, exact));
    }
  }
  const ratios = (e: number[]) => [e[0] / e[1], e[1] / e[2]];
  for (const r of ratios(err[1])) assert.ok(r > 1.7 && r < 2.3, `order 1 error halves per doubling: errors ${err[1]}`);
  for (const r of ratios(err[2])) assert.ok(r > 3.3 && r < 4.7, `order 2 error quarters per doubling: errors ${err[2]}`);
  assert.ok(err[2][1] < err[1][1] / 5, `2M beats DDIM at 20 steps: ${err[2][1]} vs ${err[1][1]}`);
});

test('DPM-Solver++ order 1 is DDIM (η = 0): final σ = 0 ↔ set_alpha_to_one, sigma_min ↔ final ᾱ_0', async () => {
  const ts = Array.from(dpmSolverTimesteps(1000, 12, 'trailing'));
  const xT = new Rng(5).normalFloat32(8);
  const model = gaussianModel('epsilon');
  for (const [fin, setAlphaToOne] of [['zero', true], ['sigma_min', false]] as const) {
    const dpm = await sampleLoop(new DpmSolverSampler(base, { meanType: 'epsilon', timesteps: ts, solverOrder: 1, finalSigmasType: fin }), model, [2, 4], new Rng(0), { noise: xT });
    const ddim = await sampleLoop(new DdimSampler(base, { meanType: 'epsilon', eta: 0, timesteps: ts, setAlphaToOne }), model, [2, 4], new Rng(0), { noise: xT });
    assertClose(dpm, ddim, { atol: 2e-6 }, `order 1 vs DDIM (${fin})`);
  }
});

test('one 2M step is Algorithm 2 written out: D = (1 + 1/(2r)) m0 − 1/(2r) m1, x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) D', () => {
  const ts = [999, 700, 450, 200];
  const sampler = new DpmSolverSampler(base, { meanType: 'x0', timesteps: ts });
  const x1: ShapedArray = { data: Float32Array.of(0.5, -1.2, 2), shape: [1, 3] };
  const x2: ShapedArray = { data: Float32Array.of(0.1, 0.4, -0.3), shape: [1, 3] };
  const m1 = Float32Array.of(0.2, -0.4, 0.6); // x0-prediction: x̂_0 is the output
  const m0 = Float32Array.of(0.3, -0.1, 0.5);
  sampler.step(m1, 700, x1, new Rng(0));
  const got = sampler.step(m0, 450, x2, new Rng(0)).prevSample;
  const lam = (t: number) => 0.5 * Math.log(base.alphasCumprod[t] / (1 - base.alphasCumprod[t]));
  const h = lam(200) - lam(450);
  const r = (lam(450) - lam(700)) / h;
  const [aT, sT, sS] = [Math.sqrt(base.alphasCumprod[200]), Math.sqrt(1 - base.alphasCumprod[200]), Math.sqrt(1 - base.alphasCumprod[450])];
  const expected = Array.from(m0, (v, j) => {
    const D = (1 + 1 / (2 * r)) * v - (1 / (2 * r)) * m1[j];
    return (sT / sS) * x2.data[j] - aT * (Math.exp(-h) - 1) * D;
  });
  assertClose(got, expected, { atol: 1e-6 }, '2M step');
  // after reset() (or at a timestep that does not follow the previous one) the step is first order
  const first = Array.from(m0, (v, j) => (sT / sS) * x2.data[j] - aT * (Math.exp(-h) - 1) * v);
  sampler.reset();
  assertClose(sampler.step(m0, 450, x2, new Rng(0)).prevSample, first, { atol: 1e-6 }, 'after reset');
  sampler.step(m1, 999, x1, new Rng(0)); // previous step at 999, not 700
  assertClose(sampler.step(m0, 450, x2, new Rng(0)).prevSample, first, { atol: 1e-6 }, 'non-adjacent history');
});

test('DPM-Solver++: final σ = 0 returns x̂_0; lower_order_final; the sampler is reusable; no noise drawn', async () => {
  const model = gaussianModel('epsilon');
  const xT = new Rng(8).normalFloat32(6);
  // the last step to σ = 0 returns its x̂_0 exactly
  const z = new DpmSolverSampler(base, { meanType: 'epsilon', timesteps: 'trailing10', clipDenoised: true });
  const steps: { predX0: Float32Array; prevSample: Float32Array }[] = [];
  const rng = new Rng(1);
  const before = rng.state();
  const out = await sampleLoop(z, model, [2, 3], rng, { noise: xT, onStep: (s) => void steps.push(s) });
  assert.deepEqual(out, steps[steps.length - 1].predX0);
  assert.deepEqual(rng.state(), before, 'deterministic: no noise drawn');
  // a second loop with the same sampler gives the same result (the history is reset)
  assert.deepEqual(await sampleLoop(z, model, [2, 3], rng, { noise: xT }), out);
  // lower_order_final (sigma_min, fewer than 15 steps): the last step is first order, so it differs
  const mk = (lowerOrderFinal: boolean, n: number) =>
    new DpmSolverSampler(base, { meanType: 'epsilon', timesteps: `trailing${n}`, finalSigmasType: 'sigma_min', lowerOrderFinal });
  const lastOf = async (n: number, lof: boolean) => {
    const s: Float32Array[] = [];
    await sampleLoop(mk(lof, n), model, [2, 3], rng, { noise: xT, onStep: (st) => void s.push(st.prevSample) });
    return s;
  };
  const [a, b] = [await lastOf(10, true), await lastOf(10, false)];
  assert.deepEqual(a[8], b[8], 'same up to the last step');
  assert.ok(maxAbsDiff(a[9], b[9]) > 1e-4, 'the last step differs');
  const [c, d] = [await lastOf(16, true), await lastOf(16, false)];
  assert.deepEqual(c[15], d[15], 'no effect from 15 steps on');
  assert.throws(() => new DpmSolverSampler(base, { meanType: 'epsilon', solverOrder: 3 as 2 }), /solverOrder must be 1 or 2/);
  assert.throws(() => new DpmSolverSampler(base, { meanType: 'epsilon', finalSigmasType: 'one' as 'zero' }), /finalSigmasType/);
});

test('DPM-Solver++ from ε, x_0, v and learned-variance (ε half) outputs follows the same path', async () => {
  const ts = Array.from(dpmSolverTimesteps(1000, 15, 'linspace'));
  const xT = new Rng(11).normalFloat32(5);
  const run = (meanType: MeanType, lr = false) =>
    sampleLoop(new DpmSolverSampler(base, { meanType, timesteps: ts, varType: lr ? 'learnedRange' : undefined }), gaussianModel(meanType, lr), [1, 5], new Rng(0), { noise: xT });
  const eps = await run('epsilon');
  assertClose(await run('x0'), eps, { atol: 2e-5 }, 'x0 output');
  assertClose(await run('v'), eps, { atol: 2e-5 }, 'v output');
  assertClose(await run('epsilon', true), eps, { atol: 0 }, 'learnedRange: the ε half');
});

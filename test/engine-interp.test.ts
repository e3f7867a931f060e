/**
 * The reference interpreter against closed forms written inline with Math.*, and ConvTranspose
 * against the defining adjoint identity <conv(x, w), y> = <x, convT(y, w)>.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/engine/tensor.ts';
import { evaluate, erf } from '../src/engine/interp.ts';
import { assertClose, mulberry32 } from './helpers.ts';


const f64 = (v: { data: unknown }): Float64Array => v.data as Float64Array;
const exact = { atol: 0, rtol: 0 };
const tight = { atol: 1e-15, rtol: 1e-14 };

test('interp: elementwise ops with broadcasting, comparisons, where', () => {
  const a = T.input('a', [2, 3]);
  const b = T.input('b', [3]);
  const av = [1, -2, 3, 0.5, 4, -6];
  const bv = [2, 2, -1];
  const [sum, diff, prod, quot, mx, mn, pw, lt, eq, wh] = evaluate(
    [T.add(a, b), T.sub(b, a), T.mul(a, b), T.div(a, b), T.maximum(a, b), T.minimum(a, b), T.pow(T.abs(a), b), T.less(a, b), T.equal(a, b), T.where(T.greater(a, b), a, b)],
    { a: av, b: bv },
  );
  const bb = (i: number) => bv[i % 3]!;
  assertClose(f64(sum!), av.map((v, i) => v + bb(i)), exact, 'add');
  assertClose(f64(diff!), av.map((v, i) => bb(i) - v), exact, 'sub');
  assertClose(f64(prod!), av.map((v, i) => v * bb(i)), exact, 'mul');
  assertClose(f64(quot!), av.map((v, i) => v / bb(i)), exact, 'div');
  assertClose(f64(mx!), av.map((v, i) => Math.max(v, bb(i))), exact, 'max');
  assertClose(f64(mn!), av.map((v, i) => Math.min(v, bb(i))), exact, 'min');
  assertClose(f64(pw!), av.map((v, i) => Math.abs(v) ** bb(i)), tight, 'pow');
  assert.ok(lt!.data instanceof Uint8Array);
  assert.deepEqual([...lt!.data], av.map((v, i) => (v < bb(i) ? 1 : 0)));
  assert.deepEqual([...eq!.data], [0, 0, 0, 0, 0, 0]);
  assertClose(f64(wh!), av.map((v, i) => (v > bb(i) ? v : bb(i))), exact, 'where');
  assert.deepEqual(sum!.shape, [2, 3]);
});

test('interp: unary ops and erf against reference values', () => {
  const x = T.input('x', [5]);
  const xv = [-2.5, -0.3, 0.1, 1.7, 4];
  const ops: [string, (t: T.Tensor) => T.Tensor, (v: number) => number][] = [
    ['exp', T.exp, Math.exp],
    ['tanh', T.tanh, Math.tanh],
    ['sigmoid', T.sigmoid, (v) => 1 / (1 + Math.exp(-v))],
    ['silu', T.silu, (v) => v / (1 + Math.exp(-v))],
    ['sin', T.sin, Math.sin],
    ['cos', T.cos, Math.cos],
    ['abs', T.abs, Math.abs],
    ['relu', T.relu, (v) => Math.max(v, 0)],
    ['neg', T.neg, (v) => -v],
  ];
  const outs = evaluate(ops.map(([, f]) => f(x)), { x: xv });
  ops.forEach(([name, , ref], k) => assertClose(f64(outs[k]!), xv.map(ref), tight, name));
  // erf: values from A&S Table 7.1 / high-precision tables
  const table: [number, number][] = [
    [0.5, 0.5204998778130465],
    [1, 0.8427007929497149],
    [2, 0.9953222650189527],
    [2.9, 0.9999589021219005],
    [3, 0.9999779095030014],
    [3.5, 0.9999992569016276],
    [5, 0.9999999999984626],
  ];
  for (const [v, e] of table) {
    assertClose(erf(v), e, { atol: 0, rtol: 1e-15 }, `erf(${v})`);
    assertClose(erf(-v), -e, { atol: 0, rtol: 1e-15 }, `erf(${-v})`);
  }
  assert.equal(erf(0), 0);
  assert.equal(erf(10), 1);
  // Erf's derivative is 2/√π·e^{−x²}: check the interpreter's Erf by central differences at a few points
  for (const v of [-3.2, -1, 0.2, 2.95, 3.05]) {
    const h = 1e-5;
    assertClose((erf(v + h) - erf(v - h)) / (2 * h), (2 / Math.sqrt(Math.PI)) * Math.exp(-v * v), { atol: 1e-10, rtol: 1e-8 }, `erf'(${v})`);
  }
});

test('interp: conv2d with a known kernel (Laplacian, padding 1) and a stride-2 box filter', () => {
  const x = T.input('x', [1, 1, 3, 3]);
  const lap = T.constant([0, 1, 0, 1, -4, 1, 0, 1, 0], [1, 1, 3, 3]);
  // x = [[1,2,3],[4,5,6],[7,8,9]]; each output = Σ neighbours − 4·centre (zero outside)
  const [y] = evaluate([T.conv2d(x, lap, null, { padding: 1 })], { x: [1, 2, 3, 4, 5, 6, 7, 8, 9] });
  assert.deepEqual(y!.shape, [1, 1, 3, 3]);
  assertClose(f64(y!), [
    2 + 4 - 4 * 1, 1 + 3 + 5 - 4 * 2, 2 + 6 - 4 * 3,
    1 + 7 + 5 - 4 * 4, 2 + 4 + 6 + 8 - 4 * 5, 3 + 9 + 5 - 4 * 6,
    4 + 8 - 4 * 7, 5 + 7 + 9 - 4 * 8, 6 + 8 - 4 * 9,
  ], exact, 'laplacian');

  // 2x2 box filter, stride 2, on a 5x5 ramp x[i,j] = 5i + j: the last row/col is dropped;
  // two channels, groups 2, bias: channel 1 is scaled by 10.
  const x2 = T.input('x2', [1, 2, 5, 5]);
  const w = T.constant([1, 1, 1, 1, 10, 10, 10, 10], [2, 1, 2, 2]);
  const bias = T.constant([0.5, -1], [2]);
  const ramp = Array.from({ length: 25 }, (_, k) => 5 * Math.floor(k / 5) + (k % 5));
  const [z] = evaluate([T.conv2d(x2, w, bias, { stride: 2, groups: 2 })], { x2: [...ramp, ...ramp] });
  assert.deepEqual(z!.shape, [1, 2, 2, 2]);
  const box = (i: number, j: number) => 4 * (5 * 2 * i + 2 * j) + 5 * 2 + 2; // Σ of 5(2i+a) + (2j+b), a,b ∈ {0,1}
  assertClose(f64(z!), [box(0, 0) + 0.5, box(0, 1) + 0.5, box(1, 0) + 0.5, box(1, 1) + 0.5, 10 * box(0, 0) - 1, 10 * box(0, 1) - 1, 10 * box(1, 0) - 1, 10 * box(1, 1) - 1], exact, 'box');
});

test('interp: ConvTranspose is the adjoint of Conv across strides, pads, groups, outputPadding', () => {
  const r = mulberry32(7);
  const rand = (n: number) => Array.from({ length: n }, () => 2 * r() - 1);
  const cases = [
    { N: 2, C: 3, O: 4, H: 7, W: 7, k: [3, 3], s: [1, 1], p: [1, 1, 1, 1], g: 1 },
    { N: 1, C: 2, O: 3, H: 8, W: 8, k: [3, 3], s: [2, 2], p: [0, 0, 0, 0], g: 1 }, // drops a row: outputPadding 1
    { N: 1, C: 4, O: 4, H: 8, W: 7, k: [3, 3], s: [2, 2], p: [1, 1, 1, 1], g: 2 },
    { N: 2, C: 4, O: 2, H: 7, W: 9, k: [1, 1], s: [2, 3], p: [0, 0, 0, 0], g: 2 },
    { N: 1, C: 2, O: 2, H: 6, W: 5, k: [2, 3], s: [3, 2], p: [1, 0, 2, 1], g: 1 },
    { N: 1, C: 6, O: 6, H: 5, W: 5, k: [3, 3], s: [1, 1], p: [2, 2, 0, 1], g: 3 },
  ];
  for (const cs of cases) {
    const { N, C, O, H, W, k, s, p, g } = cs;
    const Ho = Math.floor((H + p[0]! + p[2]! - k[0]!) / s[0]!) + 1;
    const Wo = Math.floor((W + p[1]! + p[3]! - k[1]!) / s[1]!) + 1;
    const outputPadding: [number, number] = [H - ((Ho - 1) * s[0]! - p[0]! - p[2]! + k[0]!), W - ((Wo - 1) * s[1]! - p[1]! - p[3]! + k[1]!)];
    const x = T.input('x', [N, C, H, W]);
    const y = T.input('y', [N, O, Ho, Wo]);
    const w = T.input('w', [O, C / g, k[0]!, k[1]!]);
    const cx = T.conv2d(x, w, null, { stride: s as [number, number], padding: p as [number, number, number, number], groups: g });
    const ty = T.convTranspose2d(y, w, { strides: s as [number, number], pads: p as [number, number, number, number], group: g, outputPadding });
    assert.deepEqual(ty.shape, [N, C, H, W]);
    const feeds = { x: rand(N * C * H * W), y: rand(N * O * Ho * Wo), w: rand(O * (C / g) * k[0]! * k[1]!) };
    const [cxv, tyv] = evaluate([cx, ty], feeds);
    let lhs = 0;
    let rhs = 0;
    f64(cxv!).forEach((v, i) => (lhs += v * feeds.y[i]!));
    f64(tyv!).forEach((v, i) => (rhs += v * feeds.x[i]!));
    assertClose(rhs, lhs, { atol: 1e-12, rtol: 1e-12 }, `<conv(x,w), y> vs <x, convT(y,w)> for ${JSON.stringify(cs)}`);
  }
});

test('interp: softmax / logSoftmax of a known vector, stable for large inputs', () => {
  const x = T.input('x', [2, 3]);
  const [sm, lsm] = evaluate([T.softmax(x), T.logSoftmax(x)], { x: [1, 2, 3, 1000, 1001, 1002] });
  const z = Math.exp(1) + Math.exp(2) + Math.exp(3);
  const row = [Math.exp(1) / z, Math.exp(2) / z, Math.exp(3) / z];
  assertClose(f64(sm!), [...row, ...row], tight, 'softmax');
  const lrow = [1 - Math.log(z), 2 - Math.log(z), 3 - Math.log(z)];
  assertClose(f64(lsm!), [...lrow, ...lrow], tight, 'logSoftmax');
});

test('interp: matmul 2-D and batched with broadcast', () => {
  const a = T.input('a', [2, 2]);
  const b = T.input('b', [2, 2]);
  const [ab] = evaluate([T.matmul(a, b)], { a: [1, 2, 3, 4], b: [5, 6, 7, 8] });
  assertClose(f64(ab!), [1 * 5 + 2 * 7, 1 * 6 + 2 * 8, 3 * 5 + 4 * 7, 3 * 6 + 4 * 8], exact, '2x2');
  // [2,1,1,2] @ [3,2,1] -> [2,3,1,1]: out[i,j] = a_i · b_j
  const a3 = T.input('a3', [2, 1, 1, 2]);
  const b3 = T.input('b3', [3, 2, 1]);
  const av = [1, 2, 3, 4];
  const bv = [1, 0, 0, 1, 1, 1];
  const [o] = evaluate([T.matmul(a3, b3)], { a3: av, b3: bv });
  assert.deepEqual(o!.shape, [2, 3, 1, 1]);
  const expect: number[] = [];
  for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) expect.push(av[2 * i]! * bv[2 * j]! + av[2 * i + 1]! * bv[2 * j + 1]!);
  assertClose(f64(o!), expect, exact, 'batched');
});

test('interp: shape ops, gather / scatterAddRows, reductions, cast', () => {
  const x = T.input('x', [2, 3]);
  const xv = [0, 1, 2, 3, 4, 5];
  const ix = T.constant([2, 0, 2, -1], [4], 'int64');
  const [tr, ex, cc, sl, pd, ga, sc, rs, rsk, rm, ca, cb] = evaluate(
    [
      T.transpose(x, [1, 0]),
      T.expand(T.reshape(x, [2, 1, 3]), [2, 2, 3]),
      T.concat([x, T.mul(x, 10)], 0),
      T.slice(x, 1, -3, undefined, 2),
      T.pad(x, [1, 0, 0, 1]),
      T.gather(T.transpose(x, [1, 0]), ix),
      T.scatterAddRows(ix, T.gather(T.transpose(x, [1, 0]), ix), 3),
      T.sum(x, 0),
      T.sum(x, 1, true),
      T.max(T.neg(x), 1),
      T.cast(T.mul(x, -0.7), 'int64'),
      T.cast(T.greater(x, 2), 'float32'),
    ],
    { x: xv },
  );
  assert.deepEqual(tr!.shape, [3, 2]);
  assertClose(f64(tr!), [0, 3, 1, 4, 2, 5], exact, 'transpose');
  assertClose(f64(ex!), [0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5], exact, 'expand');
  assertClose(f64(cc!), [0, 1, 2, 3, 4, 5, 0, 10, 20, 30, 40, 50], exact, 'concat');
  assert.deepEqual(sl!.shape, [2, 2]);
  assertClose(f64(sl!), [0, 2, 3, 5], exact, 'slice');
  assert.deepEqual(pd!.shape, [3, 4]);
  assertClose(f64(pd!), [0, 0, 0, 0, 0, 1, 2, 0, 3, 4, 5, 0], exact, 'pad');
  assertClose(f64(ga!), [2, 5, 0, 3, 2, 5, 2, 5], exact, 'gather (negative index counts from the end)');
  assertClose(f64(sc!), [0, 3, 0, 0, 6, 15], exact, 'scatterAddRows');
  assertClose(f64(rs!), [3, 5, 7], exact, 'sum axis 0');
  assert.deepEqual(rsk!.shape, [2, 1]);
  assertClose(f64(rsk!), [3, 12], exact, 'sum axis 1 keepdims');
  assertClose(f64(rm!), [0, -3], exact, 'max');
  assert.ok(ca!.data instanceof BigInt64Array);
  assert.deepEqual([...ca!.data], [0n, 0n, -1n, -2n, -2n, -3n]); // truncation toward zero
  assertClose(f64(cb!), [0, 0, 0, 1, 1, 1], exact, 'cast bool');
});

test('interp: float32 precision rounds after every op; float64 does not', () => {
  const x = T.input('x', [2]);
  const y = T.sub(T.add(x, 1e-8), x);
  const [d64] = evaluate([y], { x: [1, 0.1] });
  const [d32] = evaluate([y], { x: [1, 0.1] }, { precision: 'float32' });
  assertClose(f64(d64!), [1 + 1e-8 - 1, 0.1 + 1e-8 - 0.1], exact, 'float64');
  assertClose(f64(d32!), [0, Math.fround(Math.fround(0.1) + Math.fround(1e-8)) - Math.fround(0.1)], exact, 'float32');
  const [c32] = evaluate([T.mul(T.constant([0.1], [1]), 1)], {}, { precision: 'float32' });
  assert.equal(f64(c32!)[0], Math.fround(0.1));
});

test('interp: symbolic dims from feeds or opts.dims, clear feed errors', () => {
  const x = T.input('x', ['N', 3]);
  const y = T.sum(x, 1);
  const [v] = evaluate([y], { x: [1, 2, 3, 4, 5, 6] });
  assert.deepEqual(v!.shape, [2]);
  const [v3] = evaluate([y], { x: new Float32Array(9) }, { dims: { N: 3 } });
  assert.deepEqual(v3!.shape, [3]);
  assert.throws(() => evaluate([y], { x: [1, 2, 3, 4] }), /input 'x'.*4 values.*multiple of 3/);
  assert.throws(() => evaluate([y], { x: [1, 2, 3] }, { dims: { N: 2 } }), /input 'x' expects 6 values for shape \[2, 3\].*got 3/);
  assert.throws(() => evaluate([y], {}), /missing feed for input 'x'/);
  const idx = T.input('i', [2], 'int64');
  assert.throws(() => evaluate([idx], { i: [0.5, 1] }), /input 'i' is int64/);
  // a symbol that no input carries must be given
  const z = T.expand(T.scalar(1), ['M', 2]);
  assert.throws(() => evaluate([z], {}), /symbolic dim 'M'/);
  assert.deepEqual(evaluate([z], {}, { dims: { M: 2 } })[0]!.shape, [2, 2]);
});

test('interp: each node is evaluated once (a 60-level diamond would otherwise take 2^60 steps)', () => {
  const x = T.input('x', [1]);
  let y = x;
  for (let i = 0; i < 60; i++) y = T.add(y, y);
  const [v] = evaluate([y, y], { x: [1] });
  assert.equal(f64(v!)[0], 2 ** 60);
});

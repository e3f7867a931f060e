/**
 * Seeded, splittable, counter-based random numbers: Philox4x32-10.
 *
 * Source: J. K. Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel random numbers: as easy as
 * 1, 2, 3", SC 2011 (the Random123 library). A counter-based generator is a keyed bijection
 * `block = philox(counter, key)`; the stream of a key is the blocks for counter = 0, 1, 2, … (a
 * 128-bit little-endian counter), four 32-bit words per block. So the whole state is
 * (key, counter, offset into the current block) — six words and a small integer — which is why
 * the state can be checkpointed as JSON and resumed exactly.
 *
 * Conventions (fixed once released: changing any of them changes every golden downstream):
 * - `new Rng(seed)` uses the key [seed mod 2^32, floor(seed / 2^32)] and counter 0, so the first
 *   block of seed 0 is the Random123 known-answer vector for counter = 0, key = 0.
 * - `fold(i)` derives a child key from the parent KEY only (not from its position, like JAX's
 *   `fold_in`): childKey = first two words of philox([i_lo, i_hi, 0, FOLD_DOMAIN], parentKey).
 *   The parent's own stream would reach counter word 3 = FOLD_DOMAIN only after 2^96·FOLD_DOMAIN
 *   blocks, so child keys are never blocks of the parent stream. `split(n)` is
 *   [fold(0), …, fold(n-1)]; calling it twice gives the same children.
 * - uniform (float64): 53 bits from two words, (a >>> 5)·2^26 + (b >>> 6), times 2^-53, in [0, 1).
 * - uniformFloat32: 24 bits from one word, (a >>> 8)·2^-24, in [0, 1).
 * - normal: Box–Muller on two float64 uniforms (four words), both outputs used:
 *   r = sqrt(-2 ln(1 - u1)), z0 = r cos(2π u2), z1 = r sin(2π u2). An odd-length fill drops the
 *   last z1, so a fill of n normals always consumes 4·ceil(n/2) words.
 * - integer(n): rejection sampling on one word (unbiased), for 1 ≤ n ≤ 2^32.
 *
 * Pure TypeScript on typed arrays; imports nothing from `node:*`, so the browser shares it.
 */

// Philox4x32 constants (Random123 philox.h): multipliers and Weyl key increments.
const PHILOX_M0 = 0xd2511f53;
const PHILOX_M1 = 0xcd9e8d57;
const PHILOX_W0 = 0x9e3779b9; // golden ratio
const PHILOX_W1 = 0xbb67ae85; // sqrt(3) - 1

/** Counter word 3 used by `fold` to derive child keys (a domain separator; any fixed constant). */
const FOLD_DOMAIN = 0x464f4c44; // 'FOLD'

const TWO_POW_32 = 4294967296;
const TWO_POW_M24 = 1 / 16777216;
const TWO_POW_M53 = 1 / 9007199254740992;

/**
 * High 32 bits of the exact 64-bit product of two uint32 values.
 * The operands are split into 16-bit halves so every partial product stays below 2^33 and is
 * exact in a float64 (a direct `a * b` would round above 2^53).
 */
function mulhi32(a: number, b: number): number {
  const aL = a & 0xffff;
  const aH = a >>> 16;
  const bL = b & 0xffff;
  const bH = b >>> 16;
  const ll = aL * bL; // < 2^32
  const mid = aH * bL + aL * bH + (ll >>> 16); // < 2^33
  return (aH * bH + Math.floor(mid / 65536)) >>> 0;
}

/**
 * One Philox4x32 bijection: `rounds` rounds (10 for Philox4x32-10) of the Random123 round
 * function, bumping the key by the Weyl constants between rounds.
 * @param counter four uint32 words (word 0 least significant)
 * @param key two uint32 words
 * @param rounds number of rounds; 10 is the standard, tested variant
 * @param out optional output buffer of four words
 * @returns the four output words
 */
export function philox4x32(
  counter: ArrayLike<number>,
  key: ArrayLike<number>,
  rounds = 10,
  out: Uint32Array = new Uint32Array(4),
): Uint32Array {
  let c0 = counter[0] >>> 0;
  let c1 = counter[1] >>> 0;
  let c2 = counter[2] >>> 0;
  let c3 = counter[3] >>> 0;
  let k0 = key[0] >>> 0;
  let k1 = key[1] >>> 0;
  for (let r = 0; r < rounds; r++) {
    if (r > 0) {
      k0 = (k0 + PHILOX_W0) >>> 0;
      k1 = (k1 + PHILOX_W1) >>> 0;
    }
    const hi0 = mulhi32(PHILOX_M0, c0);
    const lo0 = Math.imul(PHILOX_M0, c0) >>> 0;
    const hi1 = mulhi32(PHILOX_M1, c2);
    const lo1 = Math.imul(PHILOX_M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
  return out;
}

/** JSON-serialisable state of an {@link Rng}; `Rng.fromState(rng.state())` resumes exactly. */
export interface RngState {
  readonly algorithm: 'philox4x32-10';
  /** Two uint32 key words. */
  readonly key: readonly [number, number];
  /** Four uint32 words of the 128-bit block counter (word 0 least significant). */
  readonly counter: readonly [number, number, number, number];
  /** How many words (0..3) of block `counter` have been consumed. */
  readonly offset: number;
}

function checkUint32(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= TWO_POW_32) {
    throw new Error(`${what} must be a uint32, got ${String(v)}`);
  }
  return v;
}

function splitSafeInteger(v: number, what: string): [number, number] {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new Error(`${what} must be a non-negative safe integer, got ${v}`);
  }
  return [v % TWO_POW_32, Math.floor(v / TWO_POW_32)];
}

/**
 * A Philox4x32-10 stream. The only mutable state is the position (counter, offset); the key is
 * fixed. Children from `fold`/`split` are new, independent streams.
 */
export class Rng {
  private k0: number; // fixed after construction
  private k1: number;
  private readonly ctr = new Uint32Array(4);
  private offset = 0;
  private readonly block = new Uint32Array(4);
  private blockValid = false;

  /**
   * @param seed a non-negative safe integer; the key is [seed mod 2^32, floor(seed / 2^32)]
   */
  constructor(seed: number) {
    [this.k0, this.k1] = splitSafeInteger(seed, 'seed');
  }

  /** A stream at counter 0 for an explicit key of two uint32 words. */
  static fromKey(k0: number, k1: number): Rng {
    const rng = new Rng(0);
    rng.k0 = checkUint32(k0, 'key[0]');
    rng.k1 = checkUint32(k1, 'key[1]');
    return rng;
  }

  /** Restore a stream from {@link Rng.state} (e.g. read back from a checkpoint's JSON). */
  static fromState(state: RngState): Rng {
    if (state === null || typeof state !== 'object') throw new Error('RngState must be an object');
    const allowed = new Set(['algorithm', 'key', 'counter', 'offset']);
    for (const k of Object.keys(state)) {
      if (!allowed.has(k)) throw new Error(`RngState: unknown key '${k}'`);
    }
    if (state.algorithm !== 'philox4x32-10') {
      throw new Error(`RngState: unsupported algorithm '${String(state.algorithm)}'`);
    }
    if (!Array.isArray(state.key) || state.key.length !== 2) throw new Error('RngState.key must have 2 words');
    if (!Array.isArray(state.counter) || state.counter.length !== 4) {
      throw new Error('RngState.counter must have 4 words');
    }
    if (!Number.isInteger(state.offset) || state.offset < 0 || state.offset > 3) {
      throw new Error(`RngState.offset must be an integer in [0, 3], got ${state.offset}`);
    }
    const rng = Rng.fromKey(state.key[0], state.key[1]);
    for (let i = 0; i < 4; i++) rng.ctr[i] = checkUint32(state.counter[i], `counter[${i}]`);
    rng.offset = state.offset;
    return rng;
  }

  /** The current position as plain JSON-serialisable data. */
  state(): RngState {
    return {
      algorithm: 'philox4x32-10',
      key: [this.k0, this.k1],
      counter: [this.ctr[0], this.ctr[1], this.ctr[2], this.ctr[3]],
      offset: this.offset,
    };
  }

  /** An independent copy at the same position. */
  clone(): Rng {
    return Rng.fromState(this.state());
  }

  /**
   * Child stream `i`: a new key derived from this stream's key and `i` (see the module header).
   * Does not depend on, or advance, this stream's position.
   * @param i a non-negative safe integer (e.g. a step number or an example index)
   */
  fold(i: number): Rng {
    const [lo, hi] = splitSafeInteger(i, 'fold index');
    const k = philox4x32([lo, hi, 0, FOLD_DOMAIN], [this.k0, this.k1]);
    return Rng.fromKey(k[0], k[1]);
  }

  /** `n` independent child streams, `[fold(0), …, fold(n - 1)]`. */
  split(n: number): Rng[] {
    if (!Number.isInteger(n) || n < 0) throw new Error(`split: n must be a non-negative integer, got ${n}`);
    const out: Rng[] = [];
    for (let i = 0; i < n; i++) out.push(this.fold(i));
    return out;
  }

  /** The next uint32 word of the stream. */
  nextUint32(): number {
    if (!this.blockValid) {
      philox4x32(this.ctr, [this.k0, this.k1], 10, this.block);
      this.blockValid = true;
    }
    const v = this.block[this.offset];
    this.offset++;
    if (this.offset === 4) {
      this.offset = 0;
      this.blockValid = false;
      // 128-bit increment with carry
      for (let i = 0; i < 4; i++) {
        this.ctr[i] = (this.ctr[i] + 1) >>> 0;
        if (this.ctr[i] !== 0) break;
      }
    }
    return v;
  }

  /** Fill `out` with uint32 words; returns `out`. */
  fillUint32(out: Uint32Array): Uint32Array {
    for (let i = 0; i < out.length; i++) out[i] = this.nextUint32();
    return out;
  }

  /** A float64 uniform in [0, 1) with 53 random bits (two words). */
  uniform(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) * TWO_POW_M53;
  }

  /** Fill `out` with uniforms in [0, 1): 24-bit (one word each) for Float32Array, 53-bit (two words) for Float64Array. */
  fillUniform<A extends Float32Array | Float64Array>(out: A): A {
    if (out instanceof Float32Array) {
      for (let i = 0; i < out.length; i++) out[i] = (this.nextUint32() >>> 8) * TWO_POW_M24;
    } else {
      for (let i = 0; i < out.length; i++) out[i] = this.uniform();
    }
    return out;
  }

  /** `n` float32 uniforms in [0, 1). */
  uniformFloat32(n: number): Float32Array {
    return this.fillUniform(new Float32Array(n));
  }

  /** `n` float64 uniforms in [0, 1). */
  uniformFloat64(n: number): Float64Array {
    return this.fillUniform(new Float64Array(n));
  }

  /** Fill `out` with standard normals (Box–Muller in float64, rounded to the array's type). */
  fillNormal<A extends Float32Array | Float64Array>(out: A): A {
    const n = out.length;
    for (let i = 0; i < n; i += 2) {
      const u1 = this.uniform();
      const u2 = this.uniform();
      const r = Math.sqrt(-2 * Math.log(1 - u1)); // 1 - u1 in (0, 1]: the log is finite
      const theta = 2 * Math.PI * u2;
      out[i] = r * Math.cos(theta);
      if (i + 1 < n) out[i + 1] = r * Math.sin(theta);
    }
    return out;
  }

  /** One standard normal (consumes a full Box–Muller pair; the second value is dropped). */
  normal(): number {
    return this.fillNormal(new Float64Array(1))[0];
  }

  /** `n` standard normals as float32. */
  normalFloat32(n: number): Float32Array {
    return this.fillNormal(new Float32Array(n));
  }

  /** `n` standard normals as float64. */
  normalFloat64(n: number): Float64Array {
    return this.fillNormal(new Float64Array(n));
  }

  /**
   * A uniform integer in [0, n), unbiased: draws below the largest multiple of n that fits in
   * 2^32 are accepted (at most half are rejected, in the worst case n = 2^31 + 1).
   * @param n an integer in [1, 2^32]
   */
  integer(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_32) {
      throw new Error(`integer: n must be an integer in [1, 2^32], got ${n}`);
    }
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    for (;;) {
      const u = this.nextUint32();
      if (u < limit) return u % n;
    }
  }

  /** `count` uniform integers in [0, n), 1 ≤ n ≤ 2^31 (see {@link Rng.integer}); e.g. training timesteps. */
  integers(n: number, count: number): Int32Array {
    if (n > 0x80000000) throw new Error(`integers: n must be at most 2^31 to fit an Int32Array, got ${n}`);
    const out = new Int32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.integer(n);
    return out;
  }
}

/**
 * A stream that hands out standard normals per example: a draw of n = B·k values takes k from each
 * example's own stream. Samplers only call `normalFloat32`; anything else is a bug and throws.
 */
export class PerExampleRng extends Rng {
  constructor(private readonly streams: readonly Rng[]) {
    super(0);
  }

  override normalFloat32(n: number): Float32Array {
    const B = this.streams.length;
    if (n % B !== 0) throw new Error(`PerExampleRng: ${n} values do not split over ${B} examples`);
    const per = n / B;
    const out = new Float32Array(n);
    this.streams.forEach((r, i) => out.set(r.normalFloat32(per), i * per));
    return out;
  }

  override nextUint32(): number {
    throw new Error('PerExampleRng only provides normalFloat32');
  }
}

/**
 * Dense symmetric linear algebra in float64 for the Fréchet distance: the eigendecomposition of a
 * real symmetric matrix by the cyclic Jacobi method, and the square root of a PSD matrix from it.
 *
 * Jacobi (Golub & Van Loan, "Matrix Computations", §8.5; Rutishauser's update formulas as in
 * Numerical Recipes `jacobi`) is slower than Householder + QL but simple, and it finds small
 * eigenvalues to high relative accuracy; for the 128x128 covariances of FID-LeNet it takes a few
 * milliseconds per sweep. Matrices are row-major Float64Arrays of n·n values.
 */

export interface SymmetricEigen {
  /** eigenvalues, descending */
  values: Float64Array;
  /** eigenvectors as COLUMNS, row-major n·n: vectors[i·n + k] is component i of the k-th vector */
  vectors: Float64Array;
  /** Jacobi sweeps used */
  sweeps: number;
}

function checkSquare(a: ArrayLike<number>, n: number, what: string): void {
  if (!Number.isInteger(n) || n < 1 || a.length !== n * n) throw new Error(`${what}: expected ${n}x${n} = ${n * n} values, got ${a.length}`);
}

/**
 * Eigendecomposition A = V diag(λ) Vᵀ of a real symmetric matrix. Only the upper triangle is read
 * (the lower one is taken as its mirror). Throws if the iteration does not converge within `maxSweeps`.
 */
export function symmetricEigen(a: ArrayLike<number>, n: number, maxSweeps = 100): SymmetricEigen {
  checkSquare(a, n, 'symmetricEigen');
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      const v = a[i * n + j]!;
      if (!Number.isFinite(v)) throw new Error(`symmetricEigen: non-finite entry ${v} at (${i}, ${j})`);
      A[i * n + j] = v;
      A[j * n + i] = v;
    }
  }
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;

  let sweep = 0;
  for (; ; sweep++) {
    // 1. converged when the off-diagonal part has vanished (to underflow, or below rounding of the diagonal)
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += Math.abs(A[p * n + q]!);
    if (off === 0) break;
    if (sweep >= maxSweeps) throw new Error(`symmetricEigen: no convergence after ${maxSweeps} sweeps (off-diagonal sum ${off})`);
    // in the first sweeps rotate only the large elements (NR's threshold), afterwards every nonzero one
    const thresh = sweep < 3 ? (0.2 * off) / (n * n) : 0;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q]!;
        const g = 100 * Math.abs(apq);
        const app = A[p * n + p]!;
        const aqq = A[q * n + q]!;
        // 2. an element below the rounding of both diagonal entries is set to zero outright
        if (sweep > 3 && Math.abs(app) + g === Math.abs(app) && Math.abs(aqq) + g === Math.abs(aqq)) {
          A[p * n + q] = 0;
          A[q * n + p] = 0;
          continue;
        }
        if (Math.abs(apq) <= thresh) continue;
        // 3. the rotation that zeroes A[p][q]: t = tan φ, the smaller root of t² + 2θt − 1 = 0
        const h = aqq - app;
        let t: number;
        if (Math.abs(h) + g === Math.abs(h)) {
          t = apq / h; // θ = h / (2 apq) huge: t ≈ 1 / (2θ)
        } else {
          const theta = (0.5 * h) / apq;
          t = 1 / (Math.abs(theta) + Math.sqrt(1 + theta * theta));
          if (theta < 0) t = -t;
        }
        const c = 1 / Math.sqrt(1 + t * t);
        const s = t * c;
        const tau = s / (1 + c);
        A[p * n + p] = app - t * apq;
        A[q * n + q] = aqq + t * apq;
        A[p * n + q] = 0;
        A[q * n + p] = 0;
        // 4. rows/columns p and q of A (Rutishauser's form: a' = a ∓ s·(b ± τ·a)), then V ← V·J
        for (let r = 0; r < n; r++) {
          if (r === p || r === q) continue;
          const arp = A[r * n + p]!;
          const arq = A[r * n + q]!;
          const nrp = arp - s * (arq + tau * arp);
          const nrq = arq + s * (arp - tau * arq);
          A[r * n + p] = nrp;
          A[p * n + r] = nrp;
          A[r * n + q] = nrq;
          A[q * n + r] = nrq;
        }
        for (let r = 0; r < n; r++) {
          const vrp = V[r * n + p]!;
          const vrq = V[r * n + q]!;
          V[r * n + p] = vrp - s * (vrq + tau * vrp);
          V[r * n + q] = vrq + s * (vrp - tau * vrq);
        }
      }
    }
  }

  // 5. sort descending, permuting the eigenvector columns along
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => A[j * n + j]! - A[i * n + i]!);
  const values = Float64Array.from(order, (i) => A[i * n + i]!);
  const vectors = new Float64Array(n * n);
  for (let r = 0; r < n; r++) for (let k = 0; k < n; k++) vectors[r * n + k] = V[r * n + order[k]!]!;
  return { values, vectors, sweeps: sweep };
}

/** C = A·B for n x n row-major matrices. */
export function matmulSquare(a: Float64Array, b: Float64Array, n: number): Float64Array {
  checkSquare(a, n, 'matmulSquare');
  checkSquare(b, n, 'matmulSquare');
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k]!;
      if (aik === 0) continue;
      for (let j = 0; j < n; j++) c[i * n + j] += aik * b[k * n + j]!;
    }
  }
  return c;
}

/** V diag(f(λ)) Vᵀ: a function of a symmetric matrix applied through its eigendecomposition. */
export function fromEigen(e: SymmetricEigen, f: (lambda: number) => number): Float64Array {
  const n = e.values.length;
  const fl = Float64Array.from(e.values, f);
  const out = new Float64Array(n * n);
  const V = e.vectors;
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += V[i * n + k]! * fl[k]! * V[j * n + k]!;
      out[i * n + j] = s;
      out[j * n + i] = s;
    }
  }
  return out;
}

/** The PSD square root of a symmetric positive semi-definite matrix (eigenvalues below 0 from rounding are clipped to 0). */
export function sqrtPsd(a: ArrayLike<number>, n: number): Float64Array {
  return fromEigen(symmetricEigen(a, n), (l) => Math.sqrt(Math.max(l, 0)));
}

export function trace(a: ArrayLike<number>, n: number): number {
  checkSquare(a, n, 'trace');
  let t = 0;
  for (let i = 0; i < n; i++) t += a[i * n + i]!;
  return t;
}

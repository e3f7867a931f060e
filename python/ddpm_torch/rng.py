"""ddpm-ts's random numbers (src/rng.ts), ported exactly: Philox4x32-10 (Salmon et al., SC 2011), vectorised with numpy.

Every draw of a ddpm-ts run comes from a key and a word position, never from hidden state, so a torch process
draws what `ddpm train` draws: the same data order, timesteps, noise and label dropout. The conventions are those of
src/rng.ts (read its header): key [seed mod 2^32, seed div 2^32]; fold(i) = first two words of
philox([i_lo, i_hi, 0, FOLD_DOMAIN], key); uniform float32 = (w >> 8)·2^-24; float64 = ((a >> 5)·2^26 + (b >> 6))·2^-53;
normals by Box–Muller on float64 pairs (4 words per 2 normals); integer(n) by rejection below 2^32 - 2^32 mod n.

Integers and uniforms are bit-exact. Normals are float64 Box–Muller rounded to float32 as in ddpm-ts; log/sin/cos come
from the C library here and from V8 there, which may differ in the last float64 bit, so a float32 normal can (rarely)
differ by one ulp; test/torch-ddp.test.ts measures it.

Counter-based: `at(word)` jumps to any word of a stream, so each DDP rank draws only its own slice of the batch noise.
"""
from __future__ import annotations

import numpy as np

__all__ = ['Rng', 'philox4x32']

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = 0x9E3779B9, 0xBB67AE85
FOLD_DOMAIN = 0x464F4C44  # 'FOLD'
MASK32 = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)


def philox4x32(counters: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x32-10 of each row of `counters` ((n, 4) uint32 words, word 0 least significant) under `key`: (n, 4)."""
    c = [counters[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = key
    for r in range(10):
        if r > 0:
            k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
        p0 = M0 * c[0]  # < 2^64: exact in uint64
        p1 = M1 * c[2]
        c = [(p1 >> _32) ^ c[1] ^ np.uint64(k0), p1 & MASK32, (p0 >> _32) ^ c[3] ^ np.uint64(k1), p0 & MASK32]
    return np.stack(c, axis=1).astype(np.uint32)


class Rng:
    """One Philox stream: a fixed key and a position (the index of the next word)."""

    def __init__(self, seed: int = 0, *, key: tuple[int, int] | None = None) -> None:
        if key is None:
            if not (isinstance(seed, int) and 0 <= seed < 2 ** 53):
                raise ValueError(f'seed must be a non-negative safe integer, got {seed!r}')
            key = (seed % 2 ** 32, seed // 2 ** 32)
        self.key = (int(key[0]), int(key[1]))
        self.pos = 0  # words consumed: block pos // 4, offset pos % 4

    def fold(self, i: int) -> Rng:
        """Child stream i (depends on the key only, as src/rng.ts fold)."""
        if not (isinstance(i, int) and 0 <= i < 2 ** 53):
            raise ValueError(f'fold index must be a non-negative safe integer, got {i!r}')
        w = philox4x32(np.array([[i % 2 ** 32, i // 2 ** 32, 0, FOLD_DOMAIN]], dtype=np.uint32), self.key)[0]
        return Rng(key=(int(w[0]), int(w[1])))

    def at(self, pos: int) -> Rng:
        """A copy of this stream at word `pos`."""
        r = Rng(key=self.key)
        r.pos = pos
        return r

    def words(self, n: int) -> np.ndarray:
        """The next n uint32 words."""
        if n <= 0:
            return np.zeros(0, dtype=np.uint32)
        first, last = self.pos // 4, (self.pos + n - 1) // 4
        blocks = np.arange(first, last + 1, dtype=np.uint64)
        ctr = np.zeros((len(blocks), 4), dtype=np.uint32)
        ctr[:, 0] = (blocks & MASK32).astype(np.uint32)
        ctr[:, 1] = (blocks >> _32).astype(np.uint32)
        out = philox4x32(ctr, self.key).reshape(-1)[self.pos % 4:self.pos % 4 + n]
        self.pos += n
        return out

    def uniform_float32(self, n: int) -> np.ndarray:
        return ((self.words(n) >> np.uint32(8)).astype(np.float64) * 2.0 ** -24).astype(np.float32)

    def _uniform_float64_pairs(self, n: int) -> np.ndarray:
        w = self.words(2 * n).astype(np.float64).reshape(n, 2)
        return (np.floor(w[:, 0] / 32) * 67108864 + np.floor(w[:, 1] / 64)) * 2.0 ** -53

    def normal_float32(self, n: int, start: int = 0, count: int | None = None) -> np.ndarray:
        """Elements [start, start+count) of a fill of n standard normals (Box–Muller pairs; 4·ceil(n/2) words are
        consumed whatever the slice, so the stream ends where a full fill leaves it)."""
        count = n - start if count is None else count
        p0, p1 = start // 2, (start + count + 1) // 2  # the pairs that hold the slice
        pairs = self.at(self.pos + 4 * p0)._uniform_float64_pairs(2 * (p1 - p0)).reshape(-1, 2)
        self.pos += 4 * ((n + 1) // 2)
        u1, u2 = pairs[:, 0], pairs[:, 1]
        r = np.sqrt(-2 * np.log(1 - u1))
        theta = 2 * np.pi * u2
        z = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1).reshape(-1)
        return z[start - 2 * p0:start - 2 * p0 + count].astype(np.float32)

    def integers(self, n: int, count: int) -> np.ndarray:
        """count uniform integers in [0, n) (rejection sampling, one word per try), int64."""
        return self._bounded(np.full(count, n, dtype=np.uint64))

    def _bounded(self, ns: np.ndarray) -> np.ndarray:
        """One integer in [0, ns[i]) per entry, in order, each by rejection as src/rng.ts integer()."""
        out = np.empty(len(ns), dtype=np.int64)
        limit = np.uint64(2 ** 32) - (np.uint64(2 ** 32) % ns)
        i = 0
        while i < len(ns):
            w = self.words(len(ns) - i).astype(np.uint64)
            bad = np.flatnonzero(w >= limit[i:])
            j = len(w) if len(bad) == 0 else int(bad[0])
            out[i:i + j] = (w[:j] % ns[i:i + j]).astype(np.int64)
            i += j
            if j < len(w):  # a rejected word: the next word is drawn for the same entry
                self.pos -= len(w) - j - 1
        return out

    def shuffle_draws(self, n: int) -> np.ndarray:
        """The n−1 draws of a Fisher–Yates shuffle of n items: integer(i + 1) for i = n−1 down to 1."""
        return self._bounded(np.arange(n, 1, -1, dtype=np.uint64))

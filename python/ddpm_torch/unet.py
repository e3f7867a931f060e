"""The DDPM U-Net (Ho et al. 2020, appendix B) in PyTorch: the reference module of ddpm-ts's src/models/unet.ts.

Its state_dict keys are the parameter names of src/models/unet.ts (Linear weights [out, in], as torch stores them),
so a ddpm-ts checkpoint loads with load_state_dict(strict=True) and a state_dict saves as one. A class-conditional
model (num_classes > 0) adds guided-diffusion's label_emb, an nn.Embedding with one more row for ∅, "no class".

Dropout: given `dropout_u` (one uniform [0, 1) tensor per residual block, in forward order, shaped like the block's
activation), a block keeps the entries with u > p and scales them by 1/(1 − p), exactly as ddpm-ts's traced dropout
does with the uniforms its step draws; without it, nn.Dropout's own draws (or none in eval mode).
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['UNet', 'unet_from_config', 'timestep_embedding']


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[sin(t·f_i), cos(t·f_i)], f_i = exp(−ln(10000)·i/(half−1)); the frequencies in float64, rounded (as ddpm-ts)."""
    half = dim // 2
    freqs = torch.tensor([math.exp(-math.log(10000) * i / (half - 1)) for i in range(half)], dtype=torch.float32, device=t.device)
    args = t.float()[:, None] * freqs[None]  # (N, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (N, dim)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int, groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout)
        self.n2, self.c2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.p = dropout
        self.drop = nn.Dropout(dropout)
        self.skip: nn.Module = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor, u: Iterator[torch.Tensor] | None = None) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        h = h + self.t(F.silu(temb))[:, :, None, None]
        h = F.silu(self.n2(h))
        if u is not None and self.p > 0:
            h = h * ((next(u) > self.p).to(h.dtype) * torch.tensor(1 / (1 - self.p), dtype=h.dtype, device=h.device))
        else:
            h = self.drop(h)
        return self.skip(x) + self.c2(h)


class Attn(nn.Module):
    def __init__(self, c: int, groups: int) -> None:
        super().__init__()
        self.n, self.qkv, self.proj = nn.GroupNorm(groups, c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.n(x)).reshape(b, 3, c, h * w).unbind(1)
        a = torch.softmax(torch.einsum('bci,bcj->bij', q, k) / math.sqrt(c), dim=-1)  # (B, hw, hw)
        o = torch.einsum('bij,bcj->bci', a, v).reshape(b, c, h, w)
        return x + self.proj(o)


class UNet(nn.Module):
    def __init__(self, cin: int = 1, ch: int = 32, mults: Sequence[int] = (1, 2, 2), nres: int = 2, attn_res: Sequence[int] = (7,),
                 res: int = 28, groups: int = 8, dropout: float = 0.0, cout: int | None = None, num_classes: int = 0) -> None:
        super().__init__()
        self.ch, temb = ch, 4 * ch
        self.temb = nn.Sequential(nn.Linear(ch, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.label_emb = nn.Embedding(num_classes + 1, temb) if num_classes > 0 else None
        self.cin = nn.Conv2d(cin, ch, 3, padding=1)
        self.down, chans, c, r = nn.ModuleList(), [ch], ch, res
        for i, m in enumerate(mults):
            for _ in range(nres):
                self.down.append(ResBlock(c, ch * m, temb, groups, dropout)); c = ch * m
                if r in attn_res: self.down.append(Attn(c, groups))
                chans.append(c)
            if i != len(mults) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1)); chans.append(c); r //= 2
        self.mid = nn.ModuleList([ResBlock(c, c, temb, groups, dropout), Attn(c, groups), ResBlock(c, c, temb, groups, dropout)])
        self.up = nn.ModuleList()
        for i, m in reversed(list(enumerate(mults))):
            for _ in range(nres + 1):
                self.up.append(ResBlock(c + chans.pop(), ch * m, temb, groups, dropout)); c = ch * m
                if r in attn_res: self.up.append(Attn(c, groups))
            if i != 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode='nearest'), nn.Conv2d(c, c, 3, padding=1))); r *= 2
        self.out = nn.Sequential(nn.GroupNorm(groups, c), nn.SiLU(), nn.Conv2d(c, cout or cin, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                dropout_u: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        u = iter(dropout_u) if dropout_u is not None else None
        temb = self.temb(timestep_embedding(t, self.ch))
        if self.label_emb is not None:
            temb = temb + self.label_emb(y)
        h = self.cin(x); hs = [h]
        for m in self.down:
            if isinstance(m, ResBlock): h = m(h, temb, u); hs.append(h)
            elif isinstance(m, Attn): h = m(h); hs[-1] = h  # the skip is taken after the attention
            else: h = m(h); hs.append(h)
        for m in self.mid:
            h = m(h, temb, u) if isinstance(m, ResBlock) else m(h)
        for m in self.up:
            h = m(torch.cat([h, hs.pop()], 1), temb, u) if isinstance(m, ResBlock) else m(h)
        return self.out(h)

    def dropout_shapes(self, res: int) -> list[tuple[int, int, int]]:
        """(C, H, W) of each residual block's dropout, in forward order (the order of ddpm-ts's dropout0, dropout1, ...)."""
        shapes: list[tuple[int, int, int]] = []
        hooks = [m.n2.register_forward_hook(lambda _m, _i, o: shapes.append((o.shape[1], o.shape[2], o.shape[3])))
                 for m in self.modules() if isinstance(m, ResBlock)]
        try:
            with torch.no_grad():
                p = next(self.parameters())
                y = torch.zeros(1, dtype=torch.long, device=p.device) if self.label_emb is not None else None
                self.forward(torch.zeros(1, self.cin.in_channels, res, res, device=p.device), torch.zeros(1, device=p.device), y)
        finally:
            for h in hooks: h.remove()
        return shapes


def unet_from_config(model: dict) -> UNet:
    """The module of a ddpm-ts config's `model` section (config.json)."""
    return UNet(cin=model['inChannels'], ch=model['baseChannels'], mults=tuple(model['channelMults']), nres=model['numResBlocks'],
                attn_res=tuple(model['attnResolutions']), res=model['imageSize'], groups=model['groups'], dropout=model['dropout'],
                cout=model['outChannels'], num_classes=model.get('numClasses', 0))

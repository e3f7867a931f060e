"""PyTorch peer for the reference U-Net config 'mnist-28' (DDPM architecture, Ho et al. 2020).

Measures, on this machine, what a user would get from PyTorch CPU for the same model:
  params, train img/s (fwd+bwd+AdamW, eps-prediction L_simple), sample img/s per denoising step.
Usage: /usr/bin/python3 bench/peer/torch_unet.py [--threads 2] [--batch 64] [--json]
       /usr/bin/python3 bench/peer/torch_unet.py --serve train|denoise   (driven by bench:unet --peer, see serve())
Needs Debian's python3-torch (apt-get install python3-torch).
"""
import argparse, json, math, resource, sys, time
import torch, torch.nn as nn, torch.nn.functional as F

def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - 1))
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)

class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb, groups, dropout=0.0):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout)
        self.n2, self.c2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
    def forward(self, x, temb):
        h = self.c1(F.silu(self.n1(x)))
        h = h + self.t(F.silu(temb))[:, :, None, None]
        h = self.c2(self.drop(F.silu(self.n2(h))))
        return self.skip(x) + h

class Attn(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.n, self.qkv, self.proj = nn.GroupNorm(groups, c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)
    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.n(x)).reshape(b, 3, c, h * w).unbind(1)
        a = torch.softmax(torch.einsum('bci,bcj->bij', q, k) / math.sqrt(c), dim=-1)
        o = torch.einsum('bij,bcj->bci', a, v).reshape(b, c, h, w)
        return x + self.proj(o)

class UNet(nn.Module):
    # num_classes > 0: class-conditional, as guided-diffusion's label_emb (an nn.Embedding added to the timestep
    # embedding), with one more row for the "no class" label num_classes (classifier-free guidance)
    def __init__(self, cin=1, ch=32, mults=(1, 2, 2), nres=2, attn_res=(7,), res=28, groups=8, dropout=0.0, cout=None, num_classes=0):
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
    def forward(self, x, t, y=None):
        temb = self.temb(timestep_embedding(t, self.ch))
        if self.label_emb is not None: temb = temb + self.label_emb(y)
        h = self.cin(x); hs = [h]
        for m in self.down:
            if isinstance(m, ResBlock): h = m(h, temb); hs.append(h)
            elif isinstance(m, Attn): h = m(h); hs[-1] = h
            else: h = m(h); hs.append(h)
        for m in self.mid: h = m(h, temb) if isinstance(m, ResBlock) else m(h)
        for m in self.up:
            if isinstance(m, ResBlock): h = m(torch.cat([h, hs.pop()], 1), temb)
            else: h = m(h)
        return self.out(h)

def bench_calls(batch):
    """The timed work of one step, as ddpm-ts's bench/unet-side.ts: (train, denoise) closures over one model.
    train: fwd + bwd + AdamW on eps-prediction L_simple, fixed x0, fresh t and noise; denoise: one evaluation."""
    torch.manual_seed(0)
    net = UNet()
    betas = torch.linspace(1e-4, 0.02, 1000); abar = torch.cumprod(1 - betas, 0)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-4)
    x0 = torch.rand(batch, 1, 28, 28) * 2 - 1
    def train_step():
        t = torch.randint(0, 1000, (batch,)); eps = torch.randn_like(x0)
        ab = abar[t][:, None, None, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        loss = F.mse_loss(net(xt, t), eps)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    state = {'x': torch.randn(batch, 1, 28, 28), 'i': 0}
    @torch.no_grad()
    def denoise_step():
        state['x'] = net(state['x'], torch.full((batch,), 999 - state['i'] % 1000)); state['i'] += 1
    return net, train_step, denoise_step

def peak_rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

def serve(mode, batch):
    """The line protocol of bench/unet-side.ts on stdin/stdout: one model kept warm, timed phases on command
    ('run <seconds>' -> {"items", "seconds", "per_s", "cpu_s", "peak_rss_mb"}; 'quit'). One process per mode, so that
    its peak RSS is that mode's alone."""
    t0 = time.perf_counter()
    net, train_step, denoise_step = bench_calls(batch)
    if mode == 'denoise': net.eval()
    call = train_step if mode == 'train' else denoise_step
    for _ in range(2): call()
    nparams = sum(p.numel() for p in net.parameters())
    print(json.dumps(dict(ready=True, setup_s=round(time.perf_counter() - t0, 2), params=nparams, torch=torch.__version__)), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd and cmd[0] == 'run':
            n, t0, c0 = 0, time.perf_counter(), time.process_time()
            while True:
                call(); n += 1
                if time.perf_counter() - t0 >= float(cmd[1]): break
            el, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(json.dumps(dict(items=n * batch, seconds=round(el, 3), per_s=round(n * batch / el, 2), cpu_s=round(cpu, 2),
                                  peak_rss_mb=peak_rss_mb())), flush=True)
        elif cmd and cmd[0] == 'quit': break
        else: print(json.dumps(dict(error=f'unknown command {line.strip()!r}')), flush=True)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--steps', type=int, default=5); ap.add_argument('--json', action='store_true')
    ap.add_argument('--serve', choices=['train', 'denoise'])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.serve: return serve(a.serve, a.batch)
    net, train_step, denoise_step = bench_calls(a.batch)
    nparams = sum(p.numel() for p in net.parameters())
    def rate(call, n):
        for _ in range(2): call()
        t0 = time.perf_counter()
        for _ in range(n): call()
        return n * a.batch / (time.perf_counter() - t0)
    train_ips = rate(train_step, a.steps)
    net.eval(); denoise_ips = rate(denoise_step, a.steps * 2)
    r = dict(params=nparams, batch=a.batch, threads=a.threads, train_img_per_s=round(train_ips, 2),
             denoise_img_steps_per_s=round(denoise_ips, 2), torch=torch.__version__)
    print(json.dumps(r) if a.json else r)

if __name__ == '__main__':
    main()

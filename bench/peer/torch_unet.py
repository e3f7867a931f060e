"""PyTorch peer for the reference U-Net config 'mnist-28' (DDPM architecture, Ho et al. 2020; the module is
python/ddpm_torch/unet.py).

Measures, on this machine, what a user would get from PyTorch CPU for the same model:
  params, train img/s (fwd+bwd+AdamW, eps-prediction L_simple), sample img/s per denoising step.
Usage: /usr/bin/python3 bench/peer/torch_unet.py [--threads 2] [--batch 64] [--json]
       /usr/bin/python3 bench/peer/torch_unet.py --serve train|denoise   (driven by bench:unet --peer, see serve())
Needs Debian's python3-torch (apt-get install python3-torch).
"""
import argparse, json, os, resource, sys, time
import torch, torch.nn.functional as F

# the reference U-Net lives in python/ddpm_torch (issue 31), the one PyTorch home of the model
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'python'))
from ddpm_torch.unet import UNet  # noqa: E402

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

"""Cross-check against the PyTorch reference U-Net (python/ddpm_torch/unet.py, Debian's python3-torch).

Builds the reference module from a ddpm-ts U-Net config, loads the checkpoint's safetensors into it with
load_state_dict(strict=True) and compares its output with the one ddpm-ts computed on the same inputs (for a
class-conditional model, also the same labels). Called by scripts/crosscheck-torch.ts.
usage: crosscheck_torch.py <unet config.json> <weights.safetensors> <x.bin> <t as comma list> <ours.bin> [<y as comma list>]
"""
import json, os, struct, sys
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'python'))
from ddpm_torch.unet import unet_from_config  # noqa: E402


def load_safetensors(path):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    header, base = json.loads(b[8:8 + n]), 8 + n
    out = {}
    for k, v in header.items():
        if k == '__metadata__':
            continue
        s, e = v['data_offsets']
        out[k] = torch.from_numpy(np.frombuffer(b[base + s:base + e], dtype=np.float32).reshape(v['shape']).copy())
    return out


cfg_file, weights, xfile, ts, ours_file = sys.argv[1:6]
ys = sys.argv[6] if len(sys.argv) > 6 else None
cfg = json.load(open(cfg_file))
t = torch.tensor([int(v) for v in ts.split(',')])
y = torch.tensor([int(v) for v in ys.split(',')]) if ys else None
net = unet_from_config(cfg)
net.load_state_dict(load_safetensors(weights), strict=True)
net.eval()
S, C = cfg['imageSize'], cfg['inChannels']
x = torch.from_numpy(np.fromfile(xfile, dtype=np.float32).reshape(len(t), C, S, S))
with torch.no_grad():
    out = net(x, t, y).numpy()
ours = np.fromfile(ours_file, dtype=np.float32).reshape(out.shape)
print(json.dumps({'max_abs_diff': float(np.abs(out - ours).max()), 'max_abs_output': float(np.abs(out).max()),
                  'params': sum(p.numel() for p in net.parameters()), 'torch': torch.__version__}))

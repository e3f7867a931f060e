"""Cross-check against the PyTorch reference U-Net (bench/peer/torch_unet.py, Debian's python3-torch).

Loads a ddpm-ts checkpoint's safetensors into the reference module with load_state_dict(strict=True) and
compares its output with the one ddpm-ts computed on the same inputs. Called by scripts/crosscheck-torch.ts.
usage: crosscheck_torch.py <weights.safetensors> <x.bin> <t as comma list> <ours.bin>
"""
import json, os, struct, sys
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'bench', 'peer'))
from torch_unet import UNet  # noqa: E402


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


weights, xfile, ts, ours_file = sys.argv[1:5]
t = torch.tensor([int(v) for v in ts.split(',')])
net = UNet()
state = load_safetensors(weights)
cout = state['out.2.weight'].shape[0]
if cout != net.out[2].out_channels:  # learned variances: the output conv has a second half (v)
    net.out[2] = torch.nn.Conv2d(net.out[2].in_channels, cout, 3, padding=1)
net.load_state_dict(state, strict=True)
net.eval()
x = torch.from_numpy(np.fromfile(xfile, dtype=np.float32).reshape(len(t), 1, 28, 28))
with torch.no_grad():
    y = net(x, t).numpy()
ours = np.fromfile(ours_file, dtype=np.float32).reshape(y.shape)
print(json.dumps({'max_abs_diff': float(np.abs(y - ours).max()), 'max_abs_output': float(np.abs(y).max()), 'torch': torch.__version__}))

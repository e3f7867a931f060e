#!/usr/bin/env bash
# The PyTorch DDP test (test/torch-ddp.test.ts) runs python/ddpm_torch under Debian's python3-torch (CPU, gloo); it
# never uses pip. Install the packages when they are missing and we can (root with apt-get); otherwise say how (the
# test then skips, saying why). Roughly 80 MB to download (330 MB installed), once per fresh CI image.
set -euo pipefail
if /usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's python3-torch for the PyTorch DDP test..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-torch libopenblas0-pthread >/dev/null
else
  echo "note: /usr/bin/python3 cannot import torch; the PyTorch DDP test will skip. Install it with: sudo apt-get install python3-torch libopenblas0-pthread" >&2
fi

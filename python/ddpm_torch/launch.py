"""torchrun, for PyTorch 1.13 on Python 3.11 (Debian bookworm's python3-torch), where torchrun itself fails before
starting any process (AttributeError: 'NoneType' object has no attribute 'get'): its Std.from_str looks the value
up by iterating an IntFlag, and Python 3.11 no longer yields the zero member NONE that way. Same flags as torchrun:

    python3 -m ddpm_torch.launch --nproc_per_node=2 python/ddpm_torch/train.py --resume runs/r --steps 1000

(with python/ on PYTHONPATH, or `python3 python/ddpm_torch/launch.py ...`). With a torch that has no such bug it
is torchrun unchanged.
"""
from __future__ import annotations

import re
import sys

from torch.distributed.elastic.multiprocessing import api


def _from_str(vm: str):  # type: ignore[no-untyped-def]
    """Std.from_str as torch >= 2.0 has it: Std(int(v)) instead of a lookup by iteration."""
    if re.match(api._VALUE_REGEX, vm):
        return api.Std(int(vm))
    if re.match(api._MAPPING_REGEX, vm):
        return {int(i): api.Std(int(v)) for i, v in (m.split(':') for m in vm.split(','))}
    raise ValueError(f'{vm} does not match: <{api._VALUE_REGEX}> or <{api._MAPPING_REGEX}>')


if api.Std.from_str('0') is None:
    api.Std.from_str = staticmethod(_from_str)  # type: ignore[method-assign, assignment]

if __name__ == '__main__':
    from torch.distributed.run import main
    sys.exit(main())

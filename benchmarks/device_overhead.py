"""What the remote device costs code that does not use it: µs per small CPU op.

Genie makes the remote device a torch Python backend (PrivateUse1 kernels, see
``genie.lazy.device``/``genie.lazy.backend``): ordinary CPU code never reaches those
kernels, so it should cost nothing.  The alternative design, a torch function mode
entered for the whole process, sees every torch call; its cost is measured here with
Genie's own mode (the one ``genie.capture()`` enters where another library owns
PrivateUse1), which does the least a mode can: one dict lookup, then the call.

Each case runs ``--ops`` small ops (``x + 1``, ``x.relu()``, ``x * y`` on 16-element
tensors, in turn), ``--runs`` times; the median µs per op is reported.

    python benchmarks/device_overhead.py [--ops 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch


def _loop(n_ops: int) -> float:
    x, y = torch.randn(16), torch.randn(16)
    start = time.perf_counter()
    for _ in range(n_ops // 3):
        a = x + 1
        b = a.relu()
        x = b * y
    return (time.perf_counter() - start) / (3 * (n_ops // 3)) * 1e6


def _median(fn: Callable[[int], float], n_ops: int, runs: int) -> float:
    fn(n_ops // 10)  # warm-up
    return statistics.median(fn(n_ops) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    plain = _median(_loop, args.ops, args.runs)
    import genie
    from genie.lazy.capture import _RemoteDeviceMode

    genie.REMOTE_DEVICE  # noqa: B018 - claims PrivateUse1: kernels, device module
    claimed = _median(_loop, args.ops, args.runs)
    with _RemoteDeviceMode(None):
        mode = _median(_loop, args.ops, args.runs)
    after = _median(_loop, args.ops, args.runs)
    print(f"{args.ops} small CPU ops, median of {args.runs} runs (torch {torch.__version__})")
    print(f"plain torch:                       {plain:6.2f} us/op")
    print(f"remote device claimed (kernels):   {claimed:6.2f} us/op  ({claimed - plain:+.2f})")
    print(f"a process-wide torch function mode: {mode:6.2f} us/op  ({mode - plain:+.2f}, "
          f"{(mode / plain - 1) * 100:+.0f}%)")
    print(f"plain again, after the mode:       {after:6.2f} us/op")


if __name__ == "__main__":
    main()

"""One echo of N MiB under the old timeout policy and under the new default, as JSON.

Run by ``test_two_hosts.py`` inside the client namespace (``python slow_link_client.py URL
MIB BASE_S``), so the upload crosses the shaped link: the old policy assumed the link moved
10 MiB/s, the new default assumes 1 MiB/s.  Not a test module: it is a client program.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch

import genie

OLD_RATE_MIB_S = 10.0


def attempt(url: str, timeout: float | genie.Timeout, nbytes: int) -> dict[str, Any]:
    x = torch.zeros(nbytes // 4)
    start = time.perf_counter()
    try:
        with genie.Client(url, timeout=timeout, retries=0) as client:
            back = client.echo(x)
    except genie.TransportError as exc:
        return {"ok": False, "kind": exc.kind, "message": exc.message,
                "elapsed_s": time.perf_counter() - start}
    return {"ok": bool(torch.equal(back, x)), "elapsed_s": time.perf_counter() - start}


def main() -> None:
    url, mib, base_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    nbytes = int(mib * 2**20)
    old = attempt(url, genie.Timeout(base_s=base_s, min_rate_mib_s=OLD_RATE_MIB_S), nbytes)
    new = attempt(url, base_s, nbytes)
    print(json.dumps({"old": old, "new": new}))


if __name__ == "__main__":
    main()

"""LazyTensor: ordinary PyTorch code, captured into one ``/graph`` request.

``genie.lazy.tensor`` is the tensor and how a call is recorded, ``genie.lazy.mapping``
which torch functions are captured as which op (with ``genie.lazy.handlers`` for the
calls that are not one op), ``genie.lazy.run`` materialization, ``genie.lazy.session``
where graphs run, ``genie.lazy.capture`` the ways into the remote device, and
``genie.lazy.device`` the device (PrivateUse1, its module and generator),
``genie.lazy.backend`` its kernels and ``genie.lazy.aten`` the aten ops decomposed
calls reach.  Importing this package registers the mapping, and with
``GENIE_SERVER_URL`` set it claims the remote device at once, so that the guide's
``torch.randn(100, 100, device="privateuseone:0")`` works right after ``import genie``.
"""

import os as _os

from genie.lazy import backend as _backend  # noqa: F401 - the device's kernels, installed on claim
from genie.lazy import mapping as _mapping  # noqa: F401 - registers what each torch call means
from genie.lazy.capture import (
    arange,
    capture,
    eye,
    full,
    ones,
    rand,
    randn,
    remote_module,
    zeros,
)
from genie.lazy.device import claim as _claim
from genie.lazy.device import guard_unclaimed as _guard_unclaimed
from genie.lazy.device import remote_device
from genie.lazy.session import NO_SERVER_MESSAGE as _NO_SERVER
from genie.lazy.session import connect, disconnect
from genie.lazy.tensor import LazyTensor, materialize, persist, release, remote

__all__ = ["LazyTensor", "arange", "capture", "connect", "disconnect", "eye", "full",
           "materialize", "ones", "persist", "rand", "randn", "release", "remote",
           "remote_device", "remote_module", "zeros"]

if _os.environ.get("GENIE_SERVER_URL", "").strip():
    _claim()
else:
    _guard_unclaimed(_NO_SERVER)

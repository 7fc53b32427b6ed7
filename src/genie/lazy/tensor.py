"""LazyTensor: ordinary PyTorch code, captured into one ``/graph`` request.

A ``LazyTensor`` is a ``torch.Tensor`` subclass with no data.  Its
``__torch_function__`` turns each torch call into a node of a client-side graph
(see ``genie.lazy_mapping`` for which calls map to which allowlisted op) and
returns a new LazyTensor whose shape, strides and dtype were inferred by running
the *same registry op* on the ``meta`` device.  So ``.shape``/``.dtype`` answer at
once, and a shape error (a matmul mismatch) is raised at the line that made it, as
``InvalidArgumentError`` with torch's own message.  Meta inference is cached by
(op, argument shapes/dtypes, scalar values): a model's layers repeat, and torch's
meta kernels for elementwise ops cost ~100 µs, while a cache hit costs ~1 µs.

``materialize`` (``genie.lazy_run``) walks the graph a set of tensors depends on,
sends it in ONE request (inline inputs in the body, server handles by id), and
caches what comes back on the nodes: a materialized node becomes a leaf, so its
history is freed.

Where it runs, first match wins: an explicit ``client=`` to ``materialize``; the
server holding a handle the graph uses; the client a tensor in the graph was made
with (``genie.remote(t, client=)``, a factory's ``client=``), which what is computed
from it inherits and a value fetched that way remembers; the client of a
``genie.capture(client=...)`` block; ``genie.connect(url)``; env ``GENIE_SERVER_URL``
(with ``GENIE_TOKEN``).  None of them -> ``ConfigurationError`` at materialization.

Device identity: ``.device`` is ``remote_accelerator:0``.  Genie names torch's
PrivateUse1 backend ``remote_accelerator`` the first time a LazyTensor is made or
``genie.capture()`` is entered, not on import (once per process, unless another
library has claimed PrivateUse1, in which case ``.device`` is ``meta``); from then on
``torch.device("remote_accelerator:0")`` parses everywhere.

The first capture in a process costs about a second: torch loads its meta
kernels lazily.  After that a captured op costs ~10 µs (benchmarks/capture_overhead.py).

Semantics worth knowing: in-place ops (``add_``, ``relu_``, ``x += y``) rebind the
tensor they are called on to a new node (functionalization).  So an in-place op on
a tensor that shares data with another live one (a view and its base, a
``detach()``/``.data`` alias) is refused with ``UnsupportedOpError``: eager PyTorch
would change both, and rebinding one would leave the other stale.  Which results are
views is what torch itself decides on meta (``t[0:2]`` is, ``t[idx]`` is not).
Values handed out (``materialize()``, ``.cpu()``, ``.numpy()``) are fresh copies, as
a CUDA tensor's ``.cpu()`` is; the cached value stays private, because later graphs
send it.  Inline inputs (``genie.remote(t)``, local tensors mixed into an op) are
read when the graph is sent, not when it is captured.
"""

from __future__ import annotations

import importlib
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from genie.client import Client, RemoteTensor
from genie.errors import (
    InvalidArgumentError,
    UnsupportedOpError,
)
from genie.lazy_session import connect, disconnect, scoped_client
from genie.ops import REGISTRY, Op, OpContext

__all__ = [  # also REMOTE_DEVICE, served by the module __getattr__ below
    "remote_device",
    "LazyTensor",
    "connect",
    "disconnect",
    "materialize",
    "persist",
    "release",
    "remote",
]

REMOTE_DEVICE_TYPE = "remote_accelerator"
_META = torch.device("meta")
_META_CTX = OpContext(device=_META)
_MAX_META_CACHE = 65536


def _claim_device() -> torch.device:
    """Name PrivateUse1 ``remote_accelerator`` so the user-visible device parses."""
    name = torch._C._get_privateuse1_backend_name()
    if name == "privateuseone":
        torch.utils.rename_privateuse1_backend(REMOTE_DEVICE_TYPE)
    elif name != REMOTE_DEVICE_TYPE:  # another library owns PrivateUse1
        return _META
    return torch.device(REMOTE_DEVICE_TYPE, 0)


_claimed: list[torch.device] = []  # torch's backend name is process-wide; so is this cache


def remote_device() -> torch.device:
    """What ``LazyTensor.device`` reports (``remote_accelerator:0``).

    PrivateUse1 is named on first use, not when ``genie`` is imported: a server, or
    a program that only uses ``genie.Client``, leaves that process-wide slot free for
    a library that needs it (an NPU or HPU backend imported later).
    """
    if not _claimed:
        _claimed.append(_claim_device())
    return _claimed[0]


def __getattr__(name: str) -> Any:
    # ``genie.lazy.REMOTE_DEVICE`` stays available without claiming at import.
    if name == "REMOTE_DEVICE":
        return remote_device()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_remote_device(device: Any) -> bool:
    """True for ``"remote_accelerator"``, ``"remote_accelerator:0"`` or that torch.device."""
    if isinstance(device, torch.device):
        return device.type == REMOTE_DEVICE_TYPE
    return isinstance(device, str) and device.split(":", 1)[0] == REMOTE_DEVICE_TYPE


# --- the client-side graph ---

class Node:
    """One captured op, or a leaf: a local value (sent inline) or a server handle.

    ``kwargs`` holds the op's bound arguments with tensors replaced by their Nodes;
    ``deps`` lists those Nodes for the walk.  Once materialized, ``value``/``handle``
    is set and ``kwargs``/``deps`` are dropped: the node is a leaf from then on.
    """

    __slots__ = ("__weakref__", "client", "deps", "handle", "kwargs", "op", "value")

    def __init__(self, op: Op | None, kwargs: dict[str, Any] | None, deps: tuple[Node, ...],
                 value: torch.Tensor | None = None, handle: RemoteTensor | None = None,
                 client: Client | None = None) -> None:
        self.op = op
        self.kwargs = kwargs
        self.deps = deps
        self.value = value
        self.handle = handle
        self.client = client

    @property
    def is_leaf(self) -> bool:
        return self.value is not None or self.handle is not None


Spec = tuple[tuple[int, ...], tuple[int, ...], torch.dtype]


class LazyTensor(torch.Tensor):
    """A tensor on the remote device: metadata here, value on the server when asked.

    Create one with ``genie.remote(t)``, a factory (``genie.randn``), or torch code
    on other LazyTensors.  ``materialize()`` returns a CPU tensor; ``persist()``
    keeps the value on the server as a handle so later graphs refer to it by id.
    """

    _node: Node
    _spec: Spec
    _sharers: _Sharers | None

    @staticmethod
    def __new__(cls, *args: Any, **kwargs: Any) -> LazyTensor:
        raise TypeError("create LazyTensors with genie.remote(tensor), a genie factory "
                        "(genie.randn, ...) or torch ops on other LazyTensors")

    @classmethod
    def __torch_function__(cls, func: Callable[..., Any], types: Any,
                           args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
                           ) -> Any:
        handler = HANDLERS.get(func)
        if handler is not None:
            return handler(func, args, kwargs or {})
        return unhandled(func, args, kwargs or {})

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Sequence[Any] = (),  # type: ignore[override]
                           kwargs: Mapping[str, Any] | None = None) -> Any:
        # Reached only by a call that slipped past __torch_function__ (autograd
        # internals, a C++ path): there is no data here to run it on.
        raise UnsupportedOpError(f"{func} reached a LazyTensor below torch_function; it has no "
                                 "local data. Materialize first (x.materialize()).")

    def materialize(self, *, client: Client | None = None) -> torch.Tensor:
        """The value as a CPU tensor; one request for everything it depends on, cached."""
        return materialize(self, client=client)

    def persist(self, *, client: Client | None = None) -> LazyTensor:
        """Keep the value on the server (one request); later graphs send only its id."""
        persist(self, client=client)
        return self

    def release(self) -> None:
        """Free the server handle ``persist``/``keep=True`` made (it is not freed on GC)."""
        release(self)

    @property
    def remote_handle(self) -> RemoteTensor | None:
        """The server handle holding this value, if it was persisted."""
        return self._node.handle

    @property
    def is_materialized(self) -> bool:
        return self._node.value is not None


class _Sharers:
    """The live LazyTensors that name one storage in eager terms: a tensor, its views
    and its ``detach()``/``.data`` aliases.

    Nodes are immutable, so an in-place op rebinds only the tensor it is called on;
    the others would keep the old value where eager PyTorch shares the change.  So
    an in-place op is refused while any other member is alive.  Weak references: a
    view the user dropped no longer counts.  Made only when a view or alias is.
    """

    __slots__ = ("limit", "refs")

    def __init__(self, first: LazyTensor) -> None:
        self.refs = [weakref.ref(first)]
        self.limit = 16

    def add(self, t: LazyTensor) -> None:
        if len(self.refs) >= self.limit:  # prune dead views; amortized O(1) per add
            self.refs = [r for r in self.refs if r() is not None]
            self.limit = max(16, 2 * len(self.refs))
        self.refs.append(weakref.ref(t))

    def others(self, t: LazyTensor) -> int:
        """How many members other than ``t`` are alive."""
        return sum(1 for r in self.refs if (m := r()) is not None and m is not t)


def make_lazy(node: Node, spec: Spec, shares_with: LazyTensor | None = None) -> LazyTensor:
    """A LazyTensor on ``node``; ``shares_with`` makes it a view/alias of that tensor."""
    t: LazyTensor = torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
        LazyTensor, spec[0], strides=spec[1], dtype=spec[2], device=remote_device())
    t._node = node
    t._spec = spec
    if shares_with is None:
        t._sharers = None
    else:
        group = shares_with._sharers
        if group is None:
            group = shares_with._sharers = _Sharers(shares_with)
        group.add(t)
        t._sharers = group
    return t


#: torch function -> handler(func, args, kwargs); filled by ``genie.lazy_mapping``.
HANDLERS: dict[Any, Callable[[Any, Sequence[Any], Mapping[str, Any]], Any]] = {}


def unhandled(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """A torch function with no handler; ``genie.lazy_mapping`` replaces this."""
    raise UnsupportedOpError(f"{func} is not supported on LazyTensor")


def _contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides = []
    acc = 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= max(d, 1)
    return tuple(reversed(strides))


#: id(local tensor) -> (weak tensor, weak leaf Node): weak both ways, so neither the
#: cache nor a forgotten graph keeps a user's tensor alive.
_local_leaves: dict[int, tuple[weakref.ref[torch.Tensor], weakref.ref[Node]]] = {}


def remote(tensor: torch.Tensor, *, keep: bool = False, client: Client | None = None
           ) -> LazyTensor:
    """Wrap a local tensor as a LazyTensor.

    Without ``keep`` it travels inline in the request that first needs it (and in
    every later one: use ``keep=True`` for weights).  ``keep=True`` uploads it once
    now and refers to it by handle from then on.
    """
    if isinstance(tensor, LazyTensor):
        return tensor.persist(client=client) if keep else tensor
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"genie.remote takes a torch.Tensor, got {type(tensor).__name__}")
    if tensor.requires_grad:
        tensor = tensor.detach()
    client = client or scoped_client.get()
    shape = tuple(tensor.shape)
    lazy = make_lazy(Node(None, None, (), value=tensor, client=client),
                     (shape, _contiguous_strides(shape), tensor.dtype))
    if keep:
        persist(lazy, client=client)
    return lazy


def lift(tensor: torch.Tensor) -> LazyTensor:
    """A local tensor met inside a captured op: one inline leaf per tensor object."""
    key = id(tensor)
    hit = _local_leaves.get(key)
    if hit is not None and hit[0]() is tensor:
        node = hit[1]()
        if node is not None:
            shape = tuple(tensor.shape)
            return make_lazy(node, (shape, _contiguous_strides(shape), tensor.dtype))
    lazy = remote(tensor)
    table = _local_leaves  # bound now: the callback may run at interpreter shutdown

    def forget(_ref: weakref.ref[torch.Tensor]) -> None:
        table.pop(key, None)

    _local_leaves[key] = (weakref.ref(tensor, forget), weakref.ref(lazy._node))
    return lazy


# --- capture ---

_meta_cache: dict[Any, tuple[Spec, bool]] = {}


def _scan(value: Any, deps: list[Node]) -> tuple[Any, Any]:
    """(cache-key part, node form) of one bound argument; collects tensor Nodes."""
    if isinstance(value, LazyTensor):
        deps.append(value._node)
        return value._spec, value._node
    if isinstance(value, (list, tuple)):
        parts = [_scan(v, deps) for v in value]
        form = [p[1] for p in parts]
        return (type(value), tuple(p[0] for p in parts)), (tuple(form) if isinstance(
            value, tuple) else form)
    if isinstance(value, slice):
        return ("slice", value.start, value.stop, value.step), value
    if isinstance(value, torch.Tensor):  # bound by a checker that kept a local tensor
        lazy = lift(value)
        deps.append(lazy._node)
        return lazy._spec, lazy._node
    return (type(value), value), value


def _lift_args(args: Sequence[Any]) -> list[Any]:
    out = list(args)
    for i, a in enumerate(out):
        if isinstance(a, torch.Tensor):
            if not isinstance(a, LazyTensor):
                out[i] = lift(a)
        elif isinstance(a, (list, tuple)) and any(isinstance(x, torch.Tensor) for x in a):
            lifted = _lift_args(a)
            out[i] = tuple(lifted) if isinstance(a, tuple) else lifted
    return out


def _to_meta(value: Any) -> Any:
    if isinstance(value, Node):
        raise AssertionError("unreachable")
    if isinstance(value, LazyTensor):
        shape, stride, dtype = value._spec
        return torch.empty_strided(shape, stride, dtype=dtype, device=_META)
    if isinstance(value, list):
        return [_to_meta(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_meta(v) for v in value)
    return value


def infer(op: Op, bound: Mapping[str, Any], key: Any) -> tuple[Spec, bool]:
    """(shape/strides/dtype, shares its first input's storage) of ``op`` on ``bound``:
    the registry op run on meta, which makes a view exactly where eager torch would.
    Cached under ``key``; ``None`` (an unhashable argument) runs it uncached."""
    hit = _meta_cache.get(key) if key is not None else None
    if hit is not None:
        return hit
    metas = {k: _to_meta(v) for k, v in bound.items()}
    if op.factory and metas.get("seed") is not None:
        metas["seed"] = None  # the seed changes values, never the shape
    try:
        out = op(metas, _META_CTX)
    except NotImplementedError as exc:
        raise InvalidArgumentError(f"op {op.name!r}: cannot infer its result shape without "
                                   f"running it ({exc}); materialize the inputs first") from exc
    if not isinstance(out, torch.Tensor):
        raise InvalidArgumentError(f"op {op.name!r} did not produce a tensor")
    first = metas.get(op.params[0].name) if op.params else None
    shares = first is not None and (out is first or (out._is_view() and out._base is first))
    result = ((tuple(out.shape), tuple(out.stride()), out.dtype), shares)
    if key is not None:
        if len(_meta_cache) >= _MAX_META_CACHE:
            _meta_cache.clear()
        _meta_cache[key] = result
    return result


#: Ops whose in-place method (``t_``, ``squeeze_``) reshapes in place: not captured.
#: (Which results are views is decided by meta inference, see ``infer``.)
VIEW_OPS = frozenset({"getitem", "view", "reshape", "expand", "permute", "transpose", "t",
                      "narrow", "select", "squeeze", "unsqueeze", "flatten", "unflatten",
                      "real", "imag"})


def record(op: Op, args: Sequence[Any], kwargs: Mapping[str, Any], *,
            inplace: bool = False) -> LazyTensor:
    """Record ``op(*args, **kwargs)``; checked with the server's own ``Op.bind``."""
    if inplace and op.params:
        target = args[0] if args else kwargs.get(op.params[0].name)
        if not isinstance(target, LazyTensor):
            raise UnsupportedOpError(
                f"in-place {op.name}_ on a local tensor with a remote operand is not "
                "supported; use the out-of-place form")
    if kwargs:
        kwargs = {k: (v if isinstance(v, LazyTensor) else lift(v))
                  if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    bound = op.bind(_lift_args(args), kwargs)
    deps: list[Node] = []
    key_parts: list[Any] = [op.name]
    node_kwargs: dict[str, Any] = {}
    for name, value in bound.items():
        part, form = _scan(value, deps)
        key_parts.append(part)
        node_kwargs[name] = form
    key: Any = tuple(key_parts)
    try:
        hash(key)
    except TypeError:
        key = None
    spec, shares = infer(op, bound, key)
    client = None
    for dep in deps:  # computed from a tensor made with client=: runs there too
        if dep.client is not None:
            client = dep.client
            break
    node = Node(op, node_kwargs, tuple(deps), client=client)
    first = bound.get(op.params[0].name) if op.params else None
    if not inplace:
        return make_lazy(node, spec, first if shares and isinstance(first, LazyTensor) else None)
    return _rebind(f"{op.name}_", first, node, spec)


def check_unshared(name: str, target: LazyTensor) -> None:
    """Refuse in-place ``name`` on ``target`` while a view or alias of its data lives."""
    group = target._sharers
    if group is not None and group.others(target):
        raise UnsupportedOpError(
            f"in-place {name} on a LazyTensor that shares its data with another live "
            "tensor (a view such as t[0:2] or t.reshape(...), its base, or a detach()/.data "
            "alias): eager PyTorch would change both, a LazyTensor only the one it is called "
            f"on. Use the out-of-place form (t = t.{name.rstrip('_')}(...)), or .clone() the "
            "view first")


def _rebind(name: str, target: Any, node: Node, spec: Spec) -> LazyTensor:
    """Functionalize in-place ``name`` (``add_``): ``target`` now names the result."""
    if not isinstance(target, LazyTensor):
        raise UnsupportedOpError(f"in-place {name} on a local tensor with a remote operand "
                                 "is not supported; use the out-of-place form")
    check_unshared(name, target)
    shape, _, dtype = target._spec
    if spec[0] != shape:
        raise InvalidArgumentError(f"in-place {name}: output with shape {list(shape)} "
                                   f"doesn't match the broadcast shape {list(spec[0])}")
    if spec[2] != dtype:
        if not torch.can_cast(spec[2], dtype):
            raise InvalidArgumentError(f"in-place {name}: result type {spec[2]} can't be "
                                       f"cast to the desired output type {dtype}")
        cast = REGISTRY["to"]
        node = Node(cast, {"input": node, "dtype": dtype}, (node,), client=node.client)
    target._node = node
    target._spec = (shape, target._spec[1], dtype)
    return target


def alias(t: LazyTensor) -> LazyTensor:
    """A new LazyTensor sharing ``t``'s data (``detach``, ``.data``, ``nn.Parameter(t)``)."""
    return make_lazy(t._node, t._spec, t)


def copy_of(t: LazyTensor) -> LazyTensor:
    """An independent copy (``copy.deepcopy``): the same node, which never changes."""
    return make_lazy(t._node, t._spec)


from genie.lazy_run import materialize, persist, release  # noqa: E402  (need the above)

# Last: the handlers it registers import from this module and genie.lazy_run.
importlib.import_module("genie.lazy_mapping")  # fills HANDLERS

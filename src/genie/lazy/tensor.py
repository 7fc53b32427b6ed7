"""LazyTensor: a ``torch.Tensor`` with no data whose torch calls are recorded, not run.

A ``LazyTensor`` is a wrapper subclass; its ``__torch_function__`` hands each torch
call to the handler ``genie.lazy.mapping`` registered for it (``DISPATCH``), which
records it as a node of a client-side graph and returns a new LazyTensor whose shape,
strides and dtype were inferred by running the *same registry op* on the ``meta``
device (``genie.ops.meta``, cached in the session).  So ``.shape``/``.dtype`` answer at
once, and a shape error (a matmul mismatch) is raised at the line that made it, as
``InvalidArgumentError`` with torch's own message.

``materialize`` sends the graph a set of tensors depends on in ONE request
(``genie.lazy.run``) and caches what comes back on the nodes; where it runs is the
session's choice (``genie.lazy.session``).

Semantics worth knowing: in-place ops (``add_``, ``relu_``, ``x += y``) rebind the
tensor they are called on to a new node (functionalization).  So an in-place op on
a tensor that shares data with another live one (a view and its base, a
``detach()``/``.data`` alias) is refused with ``UnsupportedOpError``: eager PyTorch
would change both, and rebinding one would leave the other stale.  Which results are
views is what torch itself decides on meta (``t[0:2]`` is, ``t[idx]`` is not).
Values handed out (``materialize()``, ``.cpu()``, ``.numpy()``) are fresh copies, as
a CUDA tensor's ``.cpu()`` is; the cached value stays private, because later graphs
send it.

Local values are taken when captured, never later: ``genie.remote(t)``, a local
tensor mixed into an op, and ``t.to(remote)`` each snapshot ``t`` (one memory copy,
like a host-to-device copy), so ``y = genie.remote(x) + 1; x.add_(100)`` still gives
eager's ``y``.  Detecting the change instead (``x._version`` at capture vs at send)
would save the copy but cannot see writes that bypass the version counter (through
``x.numpy()``, ``x.data``, DLPack), so it could still be silently wrong; the copy
cannot.  A local tensor met again unchanged (same object, same ``_version``) reuses
its snapshot, so a graph sends it once.  A tensor moved with ``.to(remote)`` (or made
with ``torch.tensor(data, device=remote)``) is *resident*: sent inline by the first
graph that needs it and kept there as a server handle, so later graphs send only
the handle (``genie.lazy.run``), like ``.to("cuda")``.

Autograd is not supported remotely: an op on a LazyTensor that requires grad, with
grad mode on, is refused at once with ``UnsupportedOpError`` saying what works
(``torch.no_grad()``, ``torch.inference_mode()``, ``requires_grad_(False)``).
``genie.remote(t)`` keeps ``t.requires_grad``, so that refusal happens rather than a
silent detach.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from genie.client import Client, RemoteTensor
from genie.errors import InvalidArgumentError, UnsupportedOpError
from genie.lazy.device import remote_device
from genie.lazy.node import LazyNode, contiguous_strides
from genie.lazy.run import release_nodes, run_nodes, value_of
from genie.lazy.session import SESSION, scoped_client
from genie.ops import REGISTRY, MetaFailure, Op, infer
from genie.ops.meta import Spec

__all__ = ["ATEN", "AUTOGRAD_MESSAGE", "DISPATCH", "VIEW_OPS", "Dispatcher", "Handler",
           "LazyTensor", "adopt", "alias", "check_unshared", "is_refusal", "copy_of", "fetch", "leaf", "lift",
           "local_value", "make_lazy", "materialize", "move_into", "persist", "rebind",
           "record", "refill", "refused", "release", "remote", "snapshot"]

Handler = Callable[[Any, Sequence[Any], Mapping[str, Any]], Any]


def refused(exc: InvalidArgumentError) -> InvalidArgumentError:
    """Mark ``exc`` as a refused *argument* of a handled call (not a shape error, not
    autograd): such a call is decomposed instead, or run locally under
    ``genie.capture(fallback="local")`` (see ``Dispatcher``)."""
    exc.refused_argument = True  # type: ignore[attr-defined]
    return exc


def is_refusal(exc: BaseException) -> bool:
    return bool(getattr(exc, "refused_argument", False))


class Dispatcher:
    """torch function -> the handler that captures it, plus one for everything else.

    Filled by ``genie.lazy.mapping`` when ``genie.lazy`` is imported (registration,
    like ``torch.library``): this module defines the tensor, that one what its calls
    mean.  A handler that refuses an argument (``refused``) hands the call to
    ``on_refusal`` (decompose it, or run it locally), which gets the refusal to raise
    if neither works.
    """

    def __init__(self) -> None:
        self.handlers: dict[Any, Handler] = {}
        self.fallback: Handler = _no_handler
        self.on_refusal: Callable[[Any, Sequence[Any], Mapping[str, Any], Exception], Any] | None
        self.on_refusal = None

    def register(self, func: Any, handler: Handler, *, replace: bool = False) -> None:
        """Capture ``func`` with ``handler``; the first registration wins unless ``replace``."""
        if func is not None and (replace or func not in self.handlers):
            self.handlers[func] = handler

    def set_fallback(self, handler: Handler) -> None:
        """What a call with no handler gets (metadata passthrough, refusal, local run)."""
        self.fallback = handler

    def __call__(self, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        handler = self.handlers.get(func)
        if handler is None:
            return self.fallback(func, args, kwargs)
        try:
            return handler(func, args, kwargs)
        except InvalidArgumentError as exc:
            if self.on_refusal is None or not is_refusal(exc):
                raise
            return self.on_refusal(func, args, kwargs, exc)


def _no_handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    raise UnsupportedOpError(f"{func} is not supported on LazyTensor")


#: How LazyTensor's torch calls are captured.
DISPATCH = Dispatcher()
#: How the aten ops a decomposed call reaches are captured (``genie.lazy.aten`` fills it).
ATEN = Dispatcher()


class LazyTensor(torch.Tensor):
    """A tensor on the remote device: metadata here, value on the server when asked.

    Create one with ``genie.remote(t)``, a factory (``genie.randn``), or torch code
    on other LazyTensors.  ``materialize()`` returns a CPU tensor; ``persist()``
    keeps the value on the server as a handle so later graphs refer to it by id.
    """

    _node: LazyNode
    _spec: Spec
    _sharers: Sharers | None

    @staticmethod
    def __new__(cls, *args: Any, **kwargs: Any) -> LazyTensor:
        raise TypeError("create LazyTensors with genie.remote(tensor), a genie factory "
                        "(genie.randn, ...) or torch ops on other LazyTensors")

    @classmethod
    def __torch_function__(cls, func: Callable[..., Any], types: Any,
                           args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
                           ) -> Any:
        return DISPATCH(func, args, kwargs or {})

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Sequence[Any] = (),  # type: ignore[override]
                           kwargs: Mapping[str, Any] | None = None) -> Any:
        # An aten op: a composite torch function decomposed (see genie.lazy.aten).
        return ATEN(func, args, kwargs or {})

    def materialize(self, *, client: Client | None = None) -> torch.Tensor:
        """The value as a CPU tensor; one request for everything it depends on, cached."""
        result: torch.Tensor = materialize(self, client=client)
        return result

    def persist(self, *, client: Client | None = None) -> LazyTensor:
        """Keep the value on the server (one request); later graphs send only its id."""
        persist(self, client=client)
        return self

    def release(self, *, defer: bool = False) -> None:
        """Free the server handle ``persist``/``keep=True`` made (it is not freed on GC;
        closing the client frees all of them).  ``defer``: see ``genie.release``."""
        release(self, defer=defer)

    @property
    def remote_handle(self) -> RemoteTensor | None:
        """The server handle holding this value, if it was persisted."""
        return self._node.handle

    @property
    def is_materialized(self) -> bool:
        return self._node.value is not None


class Sharers:
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


def make_lazy(node: LazyNode, spec: Spec, shares_with: LazyTensor | None = None, *,
              requires_grad: bool = False) -> LazyTensor:
    """A LazyTensor on ``node``; ``shares_with`` makes it a view/alias of that tensor."""
    t: LazyTensor = torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
        LazyTensor, spec[0], strides=spec[1], dtype=spec[2], device=remote_device(),
        requires_grad=requires_grad)
    t._node = node
    t._spec = spec
    if shares_with is None:
        t._sharers = None
    else:
        group = shares_with._sharers
        if group is None:
            group = shares_with._sharers = Sharers(shares_with)
        group.add(t)
        t._sharers = group
    return t


def _leaf_spec(tensor: torch.Tensor) -> Spec:
    """A local tensor travels contiguous, so that is how the server (and meta) sees it."""
    shape = tuple(tensor.shape)
    return shape, contiguous_strides(shape), tensor.dtype


def snapshot(tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A private contiguous copy of ``tensor``'s value now (cast to ``dtype``)."""
    with torch.no_grad():
        return tensor.detach().to(dtype=dtype or tensor.dtype, memory_format=torch.contiguous_format,
                                  copy=True)


def leaf(tensor: torch.Tensor, *, client: Client | None = None, resident: bool = False,
         requires_grad: bool = False) -> LazyTensor:
    """A LazyTensor whose value is ``tensor`` (already private to Genie: not copied)."""
    node = LazyNode(None, None, (), value=tensor, client=client, resident=resident)
    return make_lazy(node, _leaf_spec(tensor), requires_grad=requires_grad)


def remote(tensor: torch.Tensor, *, keep: bool = False, client: Client | None = None
           ) -> LazyTensor:
    """Wrap a local tensor as a LazyTensor holding its value now (a snapshot).

    Without ``keep`` it travels inline in the request that first needs it (and in
    every later one: use ``keep=True``, or ``t.to(remote)``, for weights).
    ``keep=True`` uploads it once now and refers to it by handle from then on.
    A tensor that requires grad gives one that does too (see the module docstring).
    """
    if isinstance(tensor, LazyTensor):
        return tensor.persist(client=client) if keep else tensor
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"genie.remote takes a torch.Tensor, got {type(tensor).__name__}")
    client = client or scoped_client.get()
    value = tensor.detach() if keep else snapshot(tensor)  # keep: sent before anyone can edit it
    lazy = leaf(value, client=client, requires_grad=tensor.requires_grad)
    if keep:
        persist(lazy, client=client)
    return lazy


def lift(tensor: torch.Tensor) -> LazyTensor:
    """A local tensor met inside a captured op: one snapshot per tensor object and version."""
    table = SESSION.local_leaves  # bound now: the callback may run at interpreter shutdown
    key = id(tensor)
    hit = table.get(key)
    version = tensor._version
    if hit is not None and hit[0]() is tensor and hit[2] == version:
        node = hit[1]()
        if node is not None:
            return make_lazy(node, _leaf_spec(tensor), requires_grad=tensor.requires_grad)
    lazy = remote(tensor)

    def forget(_ref: weakref.ref[torch.Tensor]) -> None:
        table.pop(key, None)

    table[key] = (weakref.ref(tensor, forget), weakref.ref(lazy._node), version)
    return lazy


# --- capture ---

def _spec_of(value: Any) -> Spec | None:
    if isinstance(value, LazyTensor):
        return value._spec
    if isinstance(value, torch.Tensor):
        return _leaf_spec(value)
    return None


def _scan(value: Any, deps: list[LazyNode]) -> Any:
    """The node form of one bound argument; collects tensor nodes."""
    if isinstance(value, LazyTensor):
        deps.append(value._node)
        return value._node
    if isinstance(value, list):
        return [_scan(v, deps) for v in value]
    if isinstance(value, tuple):
        return tuple(_scan(v, deps) for v in value)
    if isinstance(value, torch.Tensor):  # bound by a checker that kept a local tensor
        return _scan(lift(value), deps)
    return value


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


def _infer(op: Op, bound: Mapping[str, Any]) -> tuple[Spec, bool]:
    """(shape/strides/dtype, whether it is a view of its first input) of ``op`` on
    ``bound``: the registry op run on meta, which makes a view exactly where eager
    torch would."""
    outcome = infer(op, bound, SESSION.meta, spec=_spec_of, cost=False)  # shapes only
    if isinstance(outcome, MetaFailure):
        if outcome.error is None:
            raise InvalidArgumentError(f"op {op.name!r}: cannot infer its result shape without "
                                       f"running it ({outcome.message}); materialize the "
                                       "inputs first")
        outcome.raise_()
        raise AssertionError("unreachable")
    first = op.params[0].name if op.params else None
    return outcome.spec, first is not None and outcome.view_of == first


#: Ops whose in-place method (``t_``, ``squeeze_``) reshapes in place: not captured.
#: (Which results are views is decided by meta inference.)
VIEW_OPS = frozenset({"getitem", "view", "reshape", "expand", "permute", "transpose", "t",
                      "narrow", "select", "squeeze", "unsqueeze", "flatten", "unflatten",
                      "real", "imag"})


AUTOGRAD_MESSAGE = (
    "autograd is not supported on the remote device: {what} requires grad and grad mode is "
    "on. For inference run it under torch.no_grad() or torch.inference_mode(), or call "
    "model.requires_grad_(False) / t.detach() first; to train, run the model locally")


def _refuse_grad(op_name: str, values: Iterable[Any]) -> None:
    """Refuse an op that autograd would record: an input requires grad, grad mode is on."""
    with torch._C.DisableTorchFunctionSubclass():
        for v in values:
            if isinstance(v, (list, tuple)):
                _refuse_grad(op_name, v)
            elif isinstance(v, torch.Tensor) and v.requires_grad:
                what = f"an input of {op_name!r}" + (" (a Parameter?)"
                                                     if isinstance(v, torch.nn.Parameter) else "")
                raise UnsupportedOpError(AUTOGRAD_MESSAGE.format(what=what))


def record(op: Op, args: Sequence[Any], kwargs: Mapping[str, Any], *,
           inplace: bool = False, view: bool = True) -> LazyTensor:
    """Record ``op(*args, **kwargs)``; checked with the server's own ``Op.bind``.

    ``view=False``: the result is not tracked as a view even where meta makes one
    (``unsafe_split``: its caller promises not to rely on the aliasing).
    """
    if torch.is_grad_enabled():
        _refuse_grad(op.name, (*args, *kwargs.values()))
    if inplace and op.params:
        target = args[0] if args else kwargs.get(op.params[0].name)
        if not isinstance(target, LazyTensor):
            raise UnsupportedOpError(
                f"in-place {op.name}_ on a local tensor with a remote operand is not "
                "supported; use the out-of-place form")
    if kwargs:
        kwargs = {k: (v if isinstance(v, LazyTensor) else lift(v))
                  if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    try:
        bound = op.bind(_lift_args(args), kwargs)
    except InvalidArgumentError as exc:
        raise refused(exc) from None
    deps: list[LazyNode] = []
    node_kwargs = {name: _scan(value, deps) for name, value in bound.items()}
    spec, shares = _infer(op, bound)
    client = None
    for dep in deps:  # computed from a tensor made with client=: runs there too
        if dep.client is not None:
            client = dep.client
            break
    node = LazyNode(op, node_kwargs, tuple(deps), client=client)
    first = bound.get(op.params[0].name) if op.params else None
    if not inplace:
        return make_lazy(node, spec, first if view and shares and isinstance(first, LazyTensor)
                         else None)
    return rebind(f"{op.name}_", first, node, spec)


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


def rebind(name: str, target: Any, node: LazyNode, spec: Spec) -> LazyTensor:
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
        node = LazyNode(REGISTRY["to"], {"input": node, "dtype": dtype}, (node,),
                        client=node.client)
    target._node = node
    target._spec = (shape, target._spec[1], dtype)
    return target


def move_into(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """``dst.copy_(src)`` (torch's ``copy_``, its C++ ``_copy_from``, ``load_state_dict``).

    Into a LazyTensor: ``dst`` now names ``src`` broadcast to its shape and cast to its
    dtype, and a local ``src`` becomes a resident snapshot (cast here, as a copy to a
    device casts), sent once and kept on the server (see the module docstring).  Into
    a local tensor: the LazyTensor's value is fetched and copied in.
    """
    if not isinstance(dst, LazyTensor):
        dst.copy_(local_value(src) if isinstance(src, LazyTensor) else src)
        return dst
    shape, _, dtype = dst._spec
    if not isinstance(src, LazyTensor):
        src = leaf(snapshot(src, dtype), client=scoped_client.get(), resident=True)
    if src._spec[0] != shape:
        src = record(REGISTRY["expand"], (src, list(shape)), {})
    if src._spec[2] != dtype:
        src = record(REGISTRY["to"], (src, dtype), {})
    return rebind("copy_", dst, src._node, src._spec)


def refill(t: LazyTensor, value: Any) -> LazyTensor:
    """``t.fill_(value)`` / ``t.zero_()``: ``t`` now names a new filled tensor (a factory
    node: nothing of ``t``'s old value is needed, so none of it is computed)."""
    shape, _, dtype = t._spec
    node = record(REGISTRY["full"], (list(shape), value), {"dtype": dtype})
    return rebind("fill_", t, node._node, node._spec)


def alias(t: LazyTensor) -> LazyTensor:
    """A new LazyTensor sharing ``t``'s data (``detach``, ``.data``, ``nn.Parameter(t)``)."""
    return make_lazy(t._node, t._spec, t)


def adopt(target: LazyTensor, value: LazyTensor) -> None:
    """``target.data = value``: ``target`` now names ``value``'s data, as an alias of it."""
    target._node, target._spec = value._node, value._spec
    group = value._sharers
    if group is None:
        group = value._sharers = Sharers(value)
    group.add(target)
    target._sharers = group


def copy_of(t: LazyTensor) -> LazyTensor:
    """An independent copy (``copy.deepcopy``): the same node, which never changes."""
    return make_lazy(t._node, t._spec)


# --- values ---

def _nodes(tensors: Iterable[torch.Tensor]) -> list[LazyNode]:
    nodes = []
    for t in tensors:
        if not isinstance(t, LazyTensor):
            raise TypeError(f"expected a LazyTensor, got {type(t).__name__}")
        nodes.append(t._node)
    return nodes


def materialize(*tensors: torch.Tensor, keep: Sequence[torch.Tensor] = (),
                client: Client | None = None) -> Any:
    """Fetch the values of ``tensors`` (and keep ``keep`` on the server) in ONE request.

    Returns a CPU tensor for one argument, a tuple for several.  Values are cached:
    asking again sends nothing.  Each call returns fresh tensors, as ``.cpu()`` of a
    CUDA tensor does: the cache is what later graphs send, so a caller editing its
    result must not change them (one memory copy per call, like a device-to-host copy).
    """
    fetched = _nodes(tensors)
    run_nodes(fetched, _nodes(keep), client)
    values = tuple(n.value.clone() for n in fetched)  # type: ignore[union-attr]
    return values[0] if len(values) == 1 else values


def persist(*tensors: torch.Tensor, client: Client | None = None) -> None:
    """Keep the values of ``tensors`` on the server as handles, in one request."""
    run_nodes([], _nodes(tensors), client)


def release(*tensors: torch.Tensor, defer: bool = False) -> None:
    """Free the server handles behind ``tensors`` in one request, keeping any fetched value.

    ``defer=True`` sends nothing now: the release travels with the next graph sent
    to that server, which frees the handles after it has run (so that graph may still
    read them).  A decode loop thus frees last step's KV cache in the request that
    computes the next step.  A tensor released before its value was fetched cannot be
    used again (once a deferred release has gone out).
    """
    release_nodes(_nodes(tensors), defer=defer)


def fetch(*tensors: LazyTensor) -> None:
    """Fetch the values of ``tensors`` into the cache in one request, handing out nothing."""
    run_nodes(_nodes(tensors), [], None)


def local_value(t: LazyTensor) -> torch.Tensor:
    """The cached CPU value of ``t`` (materializing it when needed), NOT a copy: for
    reading only (``item``, ``tolist``, a mask).  What users keep gets ``.clone()``."""
    return value_of(t._node)

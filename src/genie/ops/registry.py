"""What an allowlisted op is: its parameters, how arguments bind to them, how it runs.

Each ``Op`` declares its parameters with a checker per parameter, and ``Op.bind``
applies Python's own binding rules (positional, then keyword, defaults, trailing
varargs such as ``x.reshape(2, 3)``) before anything runs.  Parameter names follow
PyTorch's own signatures (``input``, ``other``, ``dim``, ``keepdim``...), so LazyTensor
binds a captured ``torch`` call with the same ``bind`` the server uses, and a client
that writes ``{"dim": 1}`` means what ``torch.sum(x, dim=1)`` means.

The ops themselves are listed in ``genie.ops.table``; this module only defines them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from genie.errors import InvalidArgumentError
from genie.ops.args import Checker
from genie.wire import dtype_name

__all__ = ["REQUIRED", "Op", "OpContext", "Param"]

#: The default of a parameter that has none.
REQUIRED: Any = object()


@dataclass(frozen=True)
class OpContext:
    """What ops need from the server: where to allocate, and how much at most."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    max_alloc_bytes: int = 1 << 34


@dataclass(frozen=True)
class Param:
    """One parameter: its name, a checker that validates and normalises the value,
    a default (absent = required), and whether it swallows trailing positionals."""

    name: str
    check: Checker
    default: Any = REQUIRED
    variadic: bool = False


@dataclass(frozen=True)
class Op:
    """An allowlisted operation: ``fn`` is called with the bound, checked arguments."""

    name: str
    fn: Callable[..., torch.Tensor]
    params: tuple[Param, ...]
    factory: bool = False  # allocates on the server device: gets ``ctx`` as a keyword
    #: The same op writing over ``input`` (``torch.relu_``), for a caller that owns it.
    inplace: Callable[..., torch.Tensor] | None = None

    def bind(self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
             ) -> dict[str, Any]:
        """Match ``args``/``kwargs`` to the parameters, check each, fill defaults."""
        kwargs = dict(kwargs or {})
        bound: dict[str, Any] = {}
        rest = list(args)
        for param in self.params:
            if not rest:
                break
            if param.variadic:
                # x.reshape(2, 3) and x.reshape((2, 3)) mean the same.
                bound[param.name] = (list(rest[0]) if len(rest) == 1
                                     and isinstance(rest[0], (list, tuple)) else rest)
                rest = []
            else:
                bound[param.name] = rest.pop(0)
        if rest:
            raise InvalidArgumentError(
                f"op {self.name!r} takes at most {len(self.params)} positional arguments "
                f"({self.signature()}), got {len(args)}")
        for key, value in kwargs.items():
            if key not in {p.name for p in self.params}:
                raise InvalidArgumentError(
                    f"op {self.name!r} has no argument {key!r}; it takes {self.signature()}")
            if key in bound:
                raise InvalidArgumentError(f"op {self.name!r} got {key!r} twice")
            bound[key] = value
        for param in self.params:
            if param.name in bound:
                bound[param.name] = param.check(f"{self.name}: {param.name}", bound[param.name])
            elif param.default is REQUIRED:
                raise InvalidArgumentError(
                    f"op {self.name!r} is missing argument {param.name!r}; "
                    f"it takes {self.signature()}")
            else:
                bound[param.name] = param.default
        return bound

    def signature(self) -> str:
        parts = []
        for p in self.params:
            star = "*" if p.variadic else ""
            parts.append(f"{star}{p.name}" if p.default is REQUIRED
                         else f"{p.name}={p.default!r}")
        return f"{self.name}({', '.join(parts)})"

    def __call__(self, bound: Mapping[str, Any], ctx: OpContext | None = None) -> torch.Tensor:
        """Run on already-bound arguments, unchecked; torch's own errors become 422s."""
        if self.factory:
            return self._invoke(self.fn, {**bound, "ctx": ctx or OpContext()}, bound)
        return self._invoke(self.fn, bound, bound)

    def run_inplace(self, bound: Mapping[str, Any]) -> torch.Tensor | None:
        """Write the result over ``input`` when that gives the very same bits as the
        out-of-place op; ``None`` (nothing run) otherwise.

        For a caller that owns ``input`` privately (decoded from its own request body):
        no fresh result to allocate and fault in.  Same bits means a contiguous floating
        tensor (so the dtype is kept) that no other argument aliases.
        """
        t = bound.get("input")
        if (self.inplace is None or not isinstance(t, torch.Tensor) or t.requires_grad
                or not t.is_floating_point() or not t.is_contiguous()):
            return None
        ptr = t.untyped_storage().data_ptr()
        for name, value in bound.items():
            if (name != "input" and isinstance(value, torch.Tensor)
                    and value.untyped_storage().data_ptr() == ptr):
                return None
        return self._invoke(self.inplace, bound, bound)

    def _invoke(self, fn: Callable[..., torch.Tensor], kwargs: Mapping[str, Any],
                bound: Mapping[str, Any]) -> torch.Tensor:
        try:
            return fn(**kwargs)
        except torch.OutOfMemoryError:
            raise  # the server turns this into 503 out_of_memory
        except (RuntimeError, ValueError, TypeError, IndexError, ArithmeticError,
                AssertionError) as exc:
            # ArithmeticError: e.g. OverflowError from arange(0, Infinity), which JSON allows.
            # AssertionError: torch.nn.functional checks some arguments with ``assert``
            # (embedding's padding_idx out of range).
            if "can't allocate memory" in str(exc) or "out of memory" in str(exc).lower():
                raise torch.OutOfMemoryError(str(exc)) from exc
            raise InvalidArgumentError(
                f"op {self.name!r} failed{describe_tensors(bound)}: {exc}") from exc


def describe_tensors(bound: Mapping[str, Any]) -> str:
    """`` on input [3, 4] float32, other [5, 6] float32``: torch's own messages do not
    always name the shapes (``dot``, ``bmm``), and a remote caller needs them."""
    parts = []
    for name, value in bound.items():
        values = value if isinstance(value, list) else [value]
        shown = [f"{list(v.shape)} {dtype_name(v.dtype)}"
                 for v in values if isinstance(v, torch.Tensor)]
        if shown:
            parts.append(f"{name} {', '.join(shown)}")
    return f" on {'; '.join(parts)}" if parts else ""

"""Argument checkers: each validates one wire value and returns the value to pass on.

An ``Op`` (``genie.ops.registry``) declares one checker per parameter.  Checkers accept only
what JSON can carry plus tensors, dtypes, slices and Ellipsis, which is also what the
graph wire format can express; anything else is an ``InvalidArgumentError`` (422)
naming the op, the parameter and what it should have been.  Names in capitals read
as types in the registry: ``Param("dim", INT)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from genie.errors import InvalidArgumentError
from genie.wire import DIM_LIMIT, MAX_RANK, dtype_from_name

__all__ = [
    "BOOL", "CONV_PADDING", "DTYPE", "INDEX", "INT", "INTS", "INT_OR_INTS", "NUMBER",
    "OPT_DTYPE", "OPT_INT", "OPT_INTS", "OPT_NUMBER", "OPT_TENSOR", "OPT_TENSOR_OR_NUMBER",
    "SIZE", "STRING", "TENSOR", "TENSORS", "TENSOR_OR_NUMBER", "ZERO_ONLY", "Checker",
    "choice", "optional",
]

Checker = Callable[[str, Any], Any]



def _bad(where: str, want: str, value: Any) -> InvalidArgumentError:
    shown = f"a tensor of shape {list(value.shape)}" if isinstance(value, torch.Tensor) \
        else _short_repr(value)
    return InvalidArgumentError(f"{where} must be {want}, got {shown}")


def _short_repr(value: Any) -> str:
    # repr() of a 4000-digit int is itself slow-ish and useless in a message.
    if type(value) is int and not -DIM_LIMIT <= value < DIM_LIMIT:
        return "an integer of over 19 digits"
    if isinstance(value, (list, tuple)) and len(value) > 8:
        return f"a list of {len(value)} values"
    return repr(value)[:80]


def TENSOR(where: str, v: Any) -> torch.Tensor:  # noqa: N802 - read as a type
    if not isinstance(v, torch.Tensor):
        raise _bad(where, "a tensor", v)
    return v


def INT(where: str, v: Any) -> int:  # noqa: N802
    if type(v) is not int:
        raise _bad(where, "an integer", v)
    return v


def BOOL(where: str, v: Any) -> bool:  # noqa: N802
    if type(v) is not bool:
        raise _bad(where, "true or false", v)
    return v


def NUMBER(where: str, v: Any) -> int | float | bool:  # noqa: N802
    if type(v) not in (int, float, bool):
        raise _bad(where, "a number", v)
    return v


def INTS(where: str, v: Any) -> list[int]:  # noqa: N802
    """An int or a list of ints (PyTorch's ``int[]`` arguments accept both)."""
    if type(v) is int:
        return [v]
    if isinstance(v, (list, tuple)) and all(type(i) is int for i in v):
        return list(v)
    raise _bad(where, "an integer or a list of integers", v)


def SIZE(where: str, v: Any) -> list[int]:  # noqa: N802
    """A tensor size for a factory: at most ``MAX_RANK`` dims, each in [0, 2**63).

    Bounded here, before anything multiplies the dims: a product of hundreds of
    huge integers costs quadratic big-integer time, enough to stall a server.
    """
    size = INTS(where, v)
    if len(size) > MAX_RANK:
        raise InvalidArgumentError(f"{where} has {len(size)} dimensions; at most {MAX_RANK}")
    if not all(0 <= d < DIM_LIMIT for d in size):
        raise _bad(where, "a list of non-negative sizes, each below 2**63", v)
    return size


def TENSORS(where: str, v: Any) -> list[torch.Tensor]:  # noqa: N802
    if isinstance(v, (list, tuple)) and v and all(isinstance(t, torch.Tensor) for t in v):
        return list(v)
    raise _bad(where, "a non-empty list of tensors", v)


def DTYPE(where: str, v: Any) -> torch.dtype:  # noqa: N802
    return v if isinstance(v, torch.dtype) else dtype_from_name(v)


def TENSOR_OR_NUMBER(where: str, v: Any) -> torch.Tensor | int | float | bool:  # noqa: N802
    return v if isinstance(v, torch.Tensor) else NUMBER(where, v)


def STRING(where: str, v: Any) -> str:  # noqa: N802
    if not isinstance(v, str):
        raise _bad(where, "a string", v)
    return v


def optional(check: Checker) -> Checker:
    def opt(where: str, v: Any) -> Any:
        return None if v is None else check(where, v)
    opt.__name__ = f"optional_{getattr(check, '__name__', 'value')}"
    return opt


def choice(*allowed: str) -> Checker:
    def one_of(where: str, v: Any) -> str:
        if v not in allowed:
            raise _bad(where, "one of " + ", ".join(map(repr, allowed)), v)
        return v
    return one_of


def INT_OR_INTS(where: str, v: Any) -> int | list[int]:  # noqa: N802
    """Kernel sizes, strides, paddings: one int or one per spatial dim."""
    return v if type(v) is int else INTS(where, v)


def CONV_PADDING(where: str, v: Any) -> Any:  # noqa: N802
    return v if v in ("same", "valid") else INT_OR_INTS(where, v)


def ZERO_ONLY(where: str, v: Any) -> float:  # noqa: N802
    """``dropout_p``: only 0.0, since training-mode dropout draws server randomness."""
    if NUMBER(where, v) != 0:
        raise InvalidArgumentError(f"{where}: only 0.0 is supported remotely (no training-mode "
                                   "dropout)")
    return 0.0


def INDEX(where: str, v: Any) -> Any:  # noqa: N802
    """``x[...]``: int, None, slice, Ellipsis, bool/long tensor, or a tuple of those."""
    items = v if isinstance(v, (list, tuple)) else [v]
    for item in items:
        if item is None or item is Ellipsis or type(item) in (int, bool):
            continue
        if isinstance(item, slice):
            for part in (item.start, item.stop, item.step):
                if part is not None and type(part) is not int:
                    raise _bad(where, "a slice of integers", item)
            continue
        if isinstance(item, torch.Tensor) and (item.dtype in (torch.bool, torch.long,
                                                              torch.int32, torch.uint8)):
            continue
        raise _bad(where, "an index (int, slice, None, Ellipsis, int/bool tensor)", item)
    return tuple(v) if isinstance(v, (list, tuple)) else v


OPT_TENSOR = optional(TENSOR)
OPT_INT = optional(INT)
OPT_INTS = optional(INTS)
OPT_DTYPE = optional(DTYPE)
OPT_NUMBER = optional(NUMBER)
OPT_TENSOR_OR_NUMBER = optional(TENSOR_OR_NUMBER)

"""The argument checkers (genie.ops.args): a value of the wrong kind is refused with a
422 that names the op, and dtype arguments take the names of wire dtypes only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from genie.errors import InvalidArgumentError, UnsupportedDTypeError

#: Any float tensor: what is refused here are the other arguments.
T = torch.ones(3, 4)


@pytest.mark.parametrize(("name", "args", "kwargs", "words"), [
    ("relu", ("x",), {}, "must be a tensor"),
    ("relu", (3.0,), {}, "must be a tensor"),
    ("add", (T, "two"), {}, "must be a number"),
    ("add", (T, None), {}, "must be a number"),
    ("add", (T, T), {"alpha": "2"}, "must be a number"),
    ("sum", (T,), {"dim": "1"}, "integer"),
    ("sum", (T,), {"dim": 1.0}, "integer"),
    ("sum", (T,), {"keepdim": 1}, "true or false"),
    ("unsqueeze", (T, True), {}, "must be an integer"),
    ("reshape", (T, 1.5), {}, "integer"),
    ("reshape", (T, [2, "6"]), {}, "integer"),
    ("cat", ([],), {}, "non-empty list of tensors"),
    ("cat", ([T, 1],), {}, "non-empty list of tensors"),
    ("gelu", (T,), {"approximate": "fast"}, "one of 'none', 'tanh'"),
    ("getitem", (T, 1.5), {}, "an index"),
    ("getitem", (T, T), {}, "an index"),
    ("getitem", (T, slice(0.5, 2)), {}, "slice of integers"),
    ("einsum", (3, T), {}, "a string"),
    ("pad", (T, [1]), {"mode": "wrap"}, "one of"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_wrong_argument_types_are_refused(name: str, args: tuple[Any, ...],
                                          kwargs: dict[str, Any], words: str,
                                          bind: Callable[..., dict[str, Any]]) -> None:
    with pytest.raises(InvalidArgumentError, match=words) as info:
        bind(name, *args, **kwargs)
    assert info.value.status == 422
    assert name in info.value.message


def test_dtype_arguments_accept_names_only_of_wire_dtypes(
        bind: Callable[..., dict[str, Any]]) -> None:
    assert bind("to", T, "bf16")["dtype"] is torch.bfloat16
    assert bind("to", T, torch.int8)["dtype"] is torch.int8
    for bad in ("float128", "complex128", "str", 3):
        with pytest.raises(UnsupportedDTypeError):
            bind("to", T, bad)

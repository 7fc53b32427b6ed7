"""Which public torch functions work on a LazyTensor: a sweep against eager torch.

Every public callable of ``torch``, ``torch.Tensor`` and ``torch.nn.functional`` is
tried with a few argument patterns on a small float tensor (``f(x)``, ``f(x, x)``,
``f(x, 1)``, ``f(x, 0)``...).  A function none of whose patterns runs eagerly is not
applicable to this input and is left out.  For the first pattern that runs eagerly,
the same call is made on ``genie.remote(x)`` (an embedded CPU server computes it) and
counted *supported* when its results equal eager's, *unsupported* otherwise (the
reason is listed).  Functions with process-wide effects (seeds, defaults, I/O) are
skipped.

    python benchmarks/lazy_coverage.py [--list]    # --list: every unsupported name
"""

from __future__ import annotations

import argparse
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

import genie
from genie.server.config import ServerConfig
from genie.server.runner import BackgroundServer

#: Names with process-wide effects, or that take a long time, never called.
_SKIP_WORDS = ("seed", "set_", "save", "load", "use_", "compile", "export", "jit", "manual",
               "default", "deterministic", "print", "warn", "register", "library", "sparse",
               "quantiz", "backward", "grad", "share_memory", "pin_memory", "record_stream",
               "cuda", "mps", "xpu", "hpu", "npu", "ipu", "vulkan", "mkldnn", "storage",
               "resize", "from_file", "from_numpy", "frombuffer", "asarray", "dlpack",
               "vmap", "cond", "while_loop", "get_", "is_", "can_cast", "promote_types",
               "result_type", "typename", "chunk_", "sym_", "align", "rename", "refine",
               "module_load", "untyped", "data_ptr", "apply_", "map_", "map2_", "new_tensor",
               "tolist", "numpy", "item", "remote_accelerator", "to_dense", "to_padded",
               "nested", "dequantize", "int_repr", "q_", "fake_quant")

_PATTERNS: list[Callable[[Any], tuple[tuple[Any, ...], dict[str, Any]]]] = [
    lambda x: ((x,), {}), lambda x: ((x, x), {}), lambda x: ((x, 1), {}),
    lambda x: ((x, 0), {}), lambda x: ((x, -1), {}), lambda x: ((x, x, x), {}),
    lambda x: ((x, 0.5), {}), lambda x: ((x, [1, 0]), {}), lambda x: ((x, 2, 2), {}),
]


def _functions() -> list[tuple[str, Callable[..., Any]]]:
    found: dict[int, tuple[str, Callable[..., Any]]] = {}
    for prefix, space in (("torch", torch), ("torch.Tensor", torch.Tensor),
                          ("torch.nn.functional", F)):
        for name in dir(space):
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                continue
            if name in ("__init__", "__new__", "__class__", "__init_subclass__", "__getattr__",
                        "__setattr__", "__delattr__", "__reduce__", "__reduce_ex__",
                        "__setstate__", "__getstate__", "__subclasshook__", "__torch_function__",
                        "__torch_dispatch__", "__dir__", "__sizeof__", "__deepcopy__",
                        "__hash__", "__format__", "__repr__", "__iter__", "__array__",
                        "__array_wrap__", "__dlpack__", "__dlpack_device__", "__len__"):
                continue
            if any(word in name for word in _SKIP_WORDS):
                continue
            fn = getattr(space, name, None)
            if not callable(fn) or inspect.isclass(fn) or inspect.ismodule(fn):
                continue
            found.setdefault(id(fn), (f"{prefix}.{name}", fn))
    return sorted(found.values())


#: Functions whose values are random or unspecified: compared by shape and dtype only.
_UNSPECIFIED = ("rand", "empty", "normal", "bernoulli", "poisson", "multinomial", "dropout",
                "exponential", "cauchy", "geometric", "uniform", "random", "binomial",
                "gumbel", "rrelu")
#: Calls that answer about the tensor object itself, not its value.
_NOT_VALUES = ("has_torch_function", "classproperty", "__str__", "torch.Tensor.type")


def _same(a: Any, b: Any, *, values: bool = True) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        a = a.materialize() if isinstance(a, genie.LazyTensor) else a
        return (a.shape == b.shape and a.dtype == b.dtype
                and (not values or torch.allclose(a, b, atol=1e-5, rtol=1e-5, equal_nan=True)))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, values=values)
                                        for x, y in zip(a, b, strict=True))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001
        return False


def sweep() -> tuple[list[str], dict[str, str], int]:
    base = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).abs() + 0.1
    supported: list[str] = []
    unsupported: dict[str, str] = {}
    applicable = 0
    for name, fn in _functions():
        if any(word in name for word in _NOT_VALUES):
            continue
        for pattern in _PATTERNS:
            args, kwargs = pattern(base.clone())
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    expected = fn(*args, **kwargs)
            except Exception:  # noqa: BLE001 - not applicable with this pattern
                continue
            if expected is NotImplemented:  # a reflected operator declining: not applicable
                continue
            applicable += 1
            lazy_args = tuple(genie.remote(a) if isinstance(a, torch.Tensor) else a
                              for a in pattern(base.clone())[0])
            try:
                with warnings.catch_warnings(), torch.no_grad():
                    warnings.simplefilter("ignore")
                    got = fn(*lazy_args, **kwargs)
                    ok = _same(got, expected,
                               values=not any(word in name for word in _UNSPECIFIED))
                reason = "" if ok else "differs from eager"
            except Exception as exc:  # noqa: BLE001
                ok, reason = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:140]}"
            if ok:
                supported.append(name)
            else:
                unsupported[name] = reason
            break
    return supported, unsupported, applicable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print every unsupported name")
    args = parser.parse_args()
    with BackgroundServer(ServerConfig(device="cpu")) as server:
        genie.connect(server.url)
        supported, unsupported, applicable = sweep()
        genie.disconnect()
    print(f"applicable functions: {applicable}; supported {len(supported)} "
          f"({len(supported) / max(applicable, 1):.0%}), unsupported {len(unsupported)}")
    if args.list:
        for name, reason in sorted(unsupported.items()):
            print(f"  {name}: {reason}")


if __name__ == "__main__":
    main()

"""The op allowlist and what is known about an op before it runs.

``genie.ops.registry`` defines an op (parameters, binding, running), ``genie.ops.args``
the argument checkers, ``genie.ops.table`` lists the allowlisted ops, and
``genie.ops.meta`` infers an op's result on the meta device (shape, strides, dtype,
aliasing) and applies the allocation cap.
"""

from genie.ops.meta import MetaCache, MetaFailure, MetaResult, StagedCache, infer
from genie.ops.registry import Op, OpContext, Param
from genie.ops.table import REGISTRY, get_op, op_names

__all__ = ["REGISTRY", "MetaCache", "MetaFailure", "MetaResult", "Op", "OpContext", "Param",
           "StagedCache", "get_op", "infer", "op_names"]

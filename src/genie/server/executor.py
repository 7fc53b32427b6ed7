"""Running requests' ops and graphs: on worker threads, timed, within the allocation cap.

Compute runs off the event loop: ``Executor.run`` hands it to a bounded pool of
worker threads (``compute_threads``, granted fairly between clients, with a deadline:
``genie.server.scheduling``) and answers 503 ``busy`` at once past ``max_inflight``
waiting requests, rather than queueing without limit.  The one exception is an op so
small that the hop would cost more than the op (``Executor.inline_fits``: on the CPU,
inputs, result and working memory within ``INLINE_BYTES`` together, as meta inference
estimates them): ``Executor.run_inline`` runs it on the loop, within the same
``max_inflight`` refusal, and an op that ever takes more than ``INLINE_MAX_MS`` of
CPU there goes to the threads from then on.  Every op is
first inferred on meta (``genie.ops.meta``, with this server's own cache) and refused
with 422 when its result would pass the cap; a graph also keeps a running total of
the bytes its live results hold.

A graph (``genie.graph`` is the wire format) is parsed once into ``Step``s, checked
(ops from the allowlist, references only to earlier nodes), and run in list order;
intermediates are dropped after their last use, so peak memory follows the live set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import anyio
import torch

from genie.errors import InvalidArgumentError, MalformedRequestError, ServerBusyError
from genie.graph import Ref, from_wire, handle_ids, refs_in
from genie.ops import MetaCache, Op, OpContext, StagedCache, get_op
from genie.ops.meta import MetaResult, check_output, data_dependent_bound, infer
from genie.ops.table import WINDOWED
from genie.ops.work import logical_bytes, tensors_in
from genie.server.device import timed
from genie.server.scheduling import FairSlots, Watch
from genie.server.timing import Timing
from genie.wire import Charge, json_cost

__all__ = ["INLINE_BYTES", "INLINE_MAX_MS", "MAX_NODES", "Executor", "Graph", "Step"]

MAX_NODES = 100_000
#: An op whose inputs, result and working memory (meta's estimate) add up to at most
#: this runs on the event loop (``Executor.run_inline``): the hop to a worker thread
#: costs about 250 us of server CPU, several times what such an op takes.
INLINE_BYTES = 64 * 1024
#: An op that took more CPU than this on the loop is never run there again (by name):
#: the bound in bytes cannot see every op's cost (a small decomposition, a large
#: inner loop), so the loop keeps a record of what surprised it.
INLINE_MAX_MS = 2.0

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Step:
    """One op application of a parsed graph; ``args``/``kwargs`` are still in wire
    form, and ``refs`` lists the tensor references in them, found once at parse time."""

    id: str
    op: Op
    args: list[Any]
    kwargs: dict[str, Any]
    refs: tuple[Ref, ...] = ()


@dataclass
class Graph:
    """A parsed, checked graph ready to run."""

    steps: list[Step]
    outputs: list[str]
    keep: list[str] = field(default_factory=list)
    #: Handles to free after the graph ran (``genie.graph``).
    release: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, text: str, charge: Charge | None = None) -> Graph:
        """Parse and check a graph; structural problems are 400, unknown ops 422.

        ``charge`` is told what parsing the JSON will cost first (``genie.wire.Charge``).
        """
        if charge is not None:
            charge(json_cost(text), f"parsing its {len(text)}-character graph")
        try:
            spec = json.loads(text)
        except (ValueError, RecursionError) as exc:  # also: huge ints, deep nesting
            raise MalformedRequestError(f"graph is not valid JSON: {exc}") from exc
        if not isinstance(spec, dict) or not isinstance(spec.get("nodes"), list):
            raise MalformedRequestError("graph must be an object with a 'nodes' list")
        if len(spec["nodes"]) > MAX_NODES:
            raise MalformedRequestError(f"graph has over {MAX_NODES} nodes")
        steps: list[Step] = []
        seen: set[str] = set()
        for i, raw in enumerate(spec["nodes"]):
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                raise MalformedRequestError(f"node {i} must be an object with a string 'id'")
            node_id = raw["id"]
            if node_id in seen:
                raise MalformedRequestError(f"node id {node_id!r} is used twice")
            args, kwargs = raw.get("args", []), raw.get("kwargs", {})
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise MalformedRequestError(f"node {node_id!r}: args is a list, kwargs an object")
            refs = tuple(refs_in([args, kwargs]))
            for ref in refs:
                if ref.kind == "node" and ref.name not in seen:
                    raise MalformedRequestError(f"node {node_id!r} refers to node {ref.name!r}, "
                                                "which is not listed before it")
            steps.append(Step(node_id, get_op(raw.get("op")), args, kwargs, refs))
            seen.add(node_id)
        outputs = spec.get("outputs", [steps[-1].id] if steps else [])
        keep = spec.get("keep", [])
        if keep is True:  # every output; a malformed outputs is reported below
            keep = list(outputs) if isinstance(outputs, list) else []
        for name, ids in (("outputs", outputs), ("keep", keep)):
            if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
                raise MalformedRequestError(f"graph {name!r} must be a list of node ids")
            missing = [i for i in ids if i not in seen]
            if missing:
                raise MalformedRequestError(f"graph {name!r} names unknown nodes {missing}")
        if not set(keep) <= set(outputs):
            outputs = outputs + [k for k in keep if k not in outputs]
        release = handle_ids(spec.get("release", []), "graph 'release'")
        return cls(steps=steps, outputs=list(dict.fromkeys(outputs)), keep=list(keep),
                   release=list(dict.fromkeys(release)))

    def refs_of_kind(self, kind: str) -> set[str]:
        """The names of the graph's references of ``kind`` (``input`` or ``handle``)."""
        return {r.name for s in self.steps for r in s.refs if r.kind == kind}


class LiveBytes:
    """Bytes held by a running graph's results, each storage counted once.

    Results that share storage with an input, a handle or another result (views,
    ``dropout``) add nothing; a storage leaves the count when its last result is
    dropped.  Storages are told apart by address, which cannot be reused while a
    result holding them is alive.
    """

    def __init__(self, *outside: Iterable[torch.Tensor]) -> None:
        self._outside = {t.untyped_storage().data_ptr() for ts in outside for t in ts}
        self._held: dict[int, list[int]] = {}  # address -> [bytes, results using it]
        self.total = 0

    def add(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in self._outside:
            return
        entry = self._held.get(ptr)
        if entry is None:
            self._held[ptr] = [storage.nbytes(), 1]
            self.total += storage.nbytes()
        else:
            entry[1] += 1

    def remove(self, tensor: torch.Tensor) -> None:
        ptr = tensor.untyped_storage().data_ptr()
        entry = self._held.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self._held[ptr]
            self.total -= entry[0]


class Executor:
    """The server's compute: device, allocation cap, meta cache, worker threads shared
    fairly between clients (``genie.server.scheduling``)."""

    def __init__(self, device: torch.device, *, max_alloc_bytes: int, compute_threads: int,
                 max_inflight: int, client_threads: int | None = None,
                 max_compute_s: float = float("inf"),
                 meta_cache: MetaCache | None = None) -> None:
        self.device = device
        self.ctx = OpContext(device=device, max_alloc_bytes=max_alloc_bytes)
        self.meta = meta_cache if meta_cache is not None else MetaCache()
        self.limiter = anyio.CapacityLimiter(compute_threads)
        self.slots = FairSlots(compute_threads, client_threads or compute_threads)
        self.max_compute_s = max_compute_s
        self.max_inflight = max_inflight
        self.inflight = 0
        #: Ops that once took longer than ``INLINE_MAX_MS`` inline: threads only now.
        self.slow_inline: set[str] = set()
        self.inline_runs = 0  # requests computed on the event loop (``run_inline``)

    def _admit(self) -> None:
        """503 when ``max_inflight`` requests are computing already."""
        if self.inflight >= self.max_inflight:
            raise ServerBusyError(f"server busy: {self.inflight} requests in flight "
                                  f"(limit {self.max_inflight}); retry shortly")

    @overload
    async def run(self, timing: Timing, fn: Callable[[Watch], T], *, client: str,
                  watch: Watch) -> T: ...

    @overload
    async def run(self, timing: Timing, fn: Callable[[Watch], T], then: Callable[[T], R], *,
                  client: str, watch: Watch) -> R: ...

    async def run(self, timing: Timing, fn: Callable[[Watch], Any],
                  then: Callable[[Any], Any] | None = None, *, client: str,
                  watch: Watch) -> Any:
        """Run ``fn(watch)`` on a worker thread, synchronized and timed; 503 when saturated.

        The thread is granted fairly (``client`` names who asks); ``watch`` starts its
        deadline when ``fn`` starts.  ``then`` runs on the same worker right after,
        outside the compute time: it is where replies are encoded, because encoding
        copies device tensors to the host and makes strided results contiguous, work
        that must not block the event loop.
        """
        self._admit()
        self.inflight += 1
        try:
            await self.slots.acquire(client)
            try:
                def work() -> Any:
                    watch.start()
                    # compute_ms is kept if ``then`` fails
                    result, timing.compute_ms = timed(self.device, lambda: fn(watch))
                    return result if then is None else then(result)

                return await anyio.to_thread.run_sync(work, limiter=self.limiter)
            finally:
                self.slots.release(client)
        finally:
            self.inflight -= 1

    def inline_fits(self, op: Op, bound: Mapping[str, Any], cache: MetaCache | StagedCache
                    ) -> bool:
        """Whether ``op`` on ``bound`` is cheap enough to run on the event loop: a CPU
        device, an op that has not been slow there before, and its inputs (as read,
        broadcast included), result and working memory within ``INLINE_BYTES``, as
        meta inference says (an op meta cannot size is not cheap).  A windowed op
        (``genie.ops.table.WINDOWED``) never is: its time follows its window, not its bytes."""
        if self.device.type != "cpu" or op.name in self.slow_inline or op.name in WINDOWED:
            return False
        total = 0
        for _, v in tensors_in(bound):
            if v.device.type != "cpu":
                return False
            total += logical_bytes(v)
        if total > INLINE_BYTES:
            return False
        outcome = infer(op, bound, cache)
        return (isinstance(outcome, MetaResult)
                and total + outcome.nbytes + (outcome.working or 0) <= INLINE_BYTES)

    def run_inline(self, timing: Timing, name: str, fn: Callable[[Watch], T],
                   then: Callable[[T], R]) -> R:
        """``run`` without the worker thread, for what ``inline_fits`` judged cheap:
        ``fn`` then ``then`` on the caller's thread (the event loop), timed; 503 past
        ``max_inflight`` as ``run`` would answer.  The op ``name`` goes to the threads
        from now on if it took more than ``INLINE_MAX_MS`` of CPU."""
        self._admit()
        watch = Watch(self.max_compute_s)
        watch.start()
        self.inline_runs += 1
        # Judged by the CPU the op took, not the wall clock: on a loaded machine the
        # loop's thread is preempted, and a cheap op would be wrongly sent away.
        cpu = time.thread_time()
        result, timing.compute_ms = timed(self.device, lambda: fn(watch))
        if (time.thread_time() - cpu) * 1000 > INLINE_MAX_MS:
            self.slow_inline.add(name)
        return then(result)

    def run_op(self, op: Op, bound: Mapping[str, Any], *, cache: MetaCache | StagedCache,
               materialized: bool = True, already: int = 0, reuse_input: bool = False
               ) -> torch.Tensor:
        """Run ``op`` within the allocation cap (checked on meta first).

        ``materialized`` and ``already``: see ``genie.ops.meta.check_output``.
        ``reuse_input``: the caller owns ``input`` privately (decoded from this
        request's body), so an op with an in-place form writes its result there.
        """
        if reuse_input:
            result = op.run_inplace(bound)
            if result is not None:
                return result
        size = check_output(op, bound, self.ctx, cache, materialized=materialized,
                            already=already)
        if size is None:
            bound_bytes = data_dependent_bound(bound)
            if bound_bytes + already > self.ctx.max_alloc_bytes:
                raise InvalidArgumentError(
                    f"op {op.name!r} makes a result whose size depends on the data, up to "
                    f"about {bound_bytes} bytes with its working memory, over the server's "
                    f"{self.ctx.max_alloc_bytes}-byte allocation limit (--max-compute-mb)")
        result = op(bound, self.ctx)
        if size is None and isinstance(result, torch.Tensor):
            # Meta could not say (a data-dependent shape): measure the real result.
            nbytes = result.numel() * result.element_size()
            if nbytes + already > self.ctx.max_alloc_bytes:
                raise InvalidArgumentError(
                    f"op {op.name!r} produced {nbytes} bytes, over the server's "
                    f"{self.ctx.max_alloc_bytes}-byte allocation limit")
        return result

    def run_graph(self, graph: Graph, inputs: Mapping[str, torch.Tensor],
                  handles: Mapping[str, torch.Tensor], cache: MetaCache | StagedCache,
                  watch: Watch | None = None) -> dict[str, torch.Tensor]:
        """Execute in order; return the output nodes' tensors.

        ``inputs`` and ``handles`` must already be on the device.  Values are dropped
        after their last use, so peak memory follows the live set, not the whole graph.
        Each step must fit the allocation cap, and so must the results alive at once.
        Before each node, ``watch`` stops the graph past its deadline or once its
        client has gone.
        """
        last_use: dict[str, int] = {}
        for i, step in enumerate(graph.steps):
            for ref in step.refs:
                if ref.kind == "node":
                    last_use[ref.name] = i
        wanted = set(graph.outputs)
        values: dict[str, torch.Tensor] = {}
        live = LiveBytes(inputs.values(), handles.values())
        limit = self.ctx.max_alloc_bytes

        def resolve(ref: Ref) -> torch.Tensor:
            if ref.kind == "node":
                return values[ref.name]
            source = inputs if ref.kind == "input" else handles
            return source[ref.name]

        for i, step in enumerate(graph.steps):
            if watch is not None:
                watch.check(f"before node {step.id!r} ({i} of {len(graph.steps)} done)")
            args = from_wire(step.args, resolve)
            kwargs = {k: from_wire(v, resolve) for k, v in step.kwargs.items()}
            # An output is laid out whole for the reply, so a view counts in full.
            result = self.run_op(step.op, step.op.bind(args, kwargs), cache=cache,
                                 materialized=step.id in wanted, already=live.total)
            if not isinstance(result, torch.Tensor):
                raise InvalidArgumentError(f"node {step.id!r} ({step.op.name}) did not produce "
                                           "a tensor")
            if step.id in last_use or step.id in wanted:
                values[step.id] = result  # else nothing reads it again: free it now
                live.add(result)
                if live.total > limit:
                    raise InvalidArgumentError(
                        f"graph: after node {step.id!r} ({step.op.name}) its live results "
                        f"hold {live.total} bytes, over the server's {limit}-byte "
                        "allocation limit; return or keep fewer outputs, or split the graph")
            for ref in step.refs:
                if (ref.kind == "node" and last_use.get(ref.name) == i
                        and ref.name not in wanted and ref.name in values):
                    live.remove(values.pop(ref.name))  # no local name: it would pin the tensor
        return {name: values[name] for name in graph.outputs}

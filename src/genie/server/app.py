"""The Genie server app: composed in one ``create_app`` call (routes, middleware,
exception handlers, lifespan), with everything it owns on ``app.state.genie``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from genie._version import __version__
from genie.ops import REGISTRY
from genie.ops.meta import warm_up
from genie.server import endpoints as ep
from genie.server.budget import ByteBudget, ReleaseBudgets
from genie.server.config import ServerConfig
from genie.server.device import cap_memory, describe, resolve_device
from genie.server.executor import Executor
from genie.server.failures import EXCEPTION_HANDLERS
from genie.server.middleware import (
    AccountingMiddleware,
    DebugDelayMiddleware,
    DirectRoutes,
    Endpoint,
    authorized,
)
from genie.server.pool import BufferPool
from genie.server.sessions import (
    SessionsCollector,
    end_session,
    get_session,
    release_tensors,
    sweep_idle,
)
from genie.server.state import ServerState
from genie.server.stats import Stats, StatsCollector
from genie.server.store import TensorStore

__all__ = ["create_app"]

log = logging.getLogger("genie.server")

#: Every route: method, path, endpoint, and the line ``GET /`` shows for it.
ROUTES: list[tuple[str, str, Endpoint, str]] = [
    ("GET", "/health", ep.health, "status, device, GPU, versions, uptime, request counters"),
    ("GET", "/ops", ep.ops, "every supported op with its signature"),
    ("GET", "/stats", ep.stats, "counters per endpoint, errors by type, latency percentiles"),
    ("GET", "/metrics", ep.metrics, "the same counters in Prometheus text format"),
    ("GET", "/device", ep.device, "GPU detection and a 1000x1000 matmul benchmark"),
    ("POST", "/execute", ep.execute, "one op (?op=NAME) on a safetensors body, or the form "
                                     "operation=NAME, tensor_file=@x.safetensors"),
    ("POST", "/graph", ep.graph, "a captured graph of ops in one request"),
    ("POST", "/echo", ep.echo, "the body's tensors sent back: transfer cost only"),
    ("POST", "/probe", ep.probe_upload, "any body, counted and dropped: the upload baseline"),
    ("GET", "/probe", ep.probe_download, "?bytes=N zero bytes: the download baseline"),
    ("POST", "/tensors", ep.put_tensor, "keep a tensor on the server; answers its handle"),
    ("GET", "/tensors", ep.list_tensors, "the tensors held, and the budget"),
    ("POST", "/tensors/release", release_tensors, "free many held tensors in one request"),
    ("GET", "/tensors/{handle}", ep.get_tensor, "a held tensor"),
    ("DELETE", "/tensors/{handle}", ep.delete_tensor, "free a held tensor"),
    ("GET", "/sessions/{session}", get_session, "one client session: its handles and idle time"),
    ("DELETE", "/sessions/{session}", end_session, "end a client session, freeing its handles"),
]


#: Routes called without Starlette's router in between (``DirectRoutes``): the hot ones.
DIRECT_PATHS = ("/execute", "/echo", "/graph")


def create_app(config: ServerConfig | None = None) -> Starlette:
    """Build a Genie app.  Resolving the device happens here, so a bad ``--device``
    fails at start-up rather than on the first request."""
    config = config or ServerConfig()
    dev = resolve_device(config.device)
    cap_memory(dev, config.max_gpu_bytes)
    store = TensorStore(config.max_held_bytes, lease_s=config.lease_s)
    counters = Stats(store.usage)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatsCollector(counters))
    registry.register(SessionsCollector(store))
    executor = Executor(dev, max_alloc_bytes=config.max_compute_bytes,
                        compute_threads=config.compute_threads, max_inflight=config.max_inflight,
                        client_threads=config.per_client_threads,
                        max_compute_s=config.max_compute_s)
    bodies = ByteBudget(config.max_inflight_body_bytes, name="request bodies in flight",
                        flag="--max-inflight-body-mb")
    replies = ByteBudget(config.max_inflight_reply_bytes, name="replies in flight",
                         flag="--max-inflight-reply-mb")
    pool = BufferPool(bodies)
    state = ServerState(config=config, executor=executor, store=store, stats=counters,
                        registry=registry, bodies=bodies, replies=replies,
                        device_info=describe(dev), body_pool=pool)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("genie %s serving on %s (%d ops, auth %s)", __version__, dev, len(REGISTRY),
                 "on" if config.token else "off")
        log.info("memory budget (MiB): %s", config.memory_budget.describe())
        # Before serving: the first meta inference (allocation cap) costs ~1.5 s once per
        # process.  Not in a daemon thread: one still inside torch at exit aborts it.
        await anyio.to_thread.run_sync(warm_up)
        async with anyio.create_task_group() as tasks:
            if config.lease_s is not None:
                tasks.start_soon(sweep_idle, store, config.lease_s)
            yield
            tasks.cancel_scope.cancel()
        store.clear()
        pool.clear()

    routes = [Route(path, authorized(endpoint), methods=[method])
              for method, path, endpoint, _ in ROUTES]
    listing = [("GET", "/", "this list of routes"), *((m, p, d) for m, p, _, d in ROUTES)]
    routes.append(Route("/", authorized(ep.index(listing)), methods=["GET"]))
    direct = [r for r in routes if r.path in DIRECT_PATHS and r.methods == {"POST"}]
    middleware = [Middleware(AccountingMiddleware),
                  Middleware(ReleaseBudgets, budgets=[bodies, replies], give_back=pool.give_back),
                  Middleware(DirectRoutes, routes=direct)]
    if config.debug_delay_ms > 0:  # test-only: a deliberately slow server
        middleware.insert(1, Middleware(DebugDelayMiddleware, delay_s=config.debug_delay_ms / 1000))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    # No redirect from /tensors/{id}/ to /tensors/{id}: it would answer 307 before the
    # token is checked.  A path with a trailing slash is simply unknown (404).
    app.router.redirect_slashes = False
    app.state.genie = state
    return app

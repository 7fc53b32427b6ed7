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
from genie.server.bodies import BodyBudget, ReleaseBodyBudget
from genie.server.config import ServerConfig
from genie.server.device import describe, resolve_device
from genie.server.executor import Executor
from genie.server.failures import EXCEPTION_HANDLERS
from genie.server.middleware import AccountingMiddleware, DebugDelayMiddleware, authorized
from genie.server.state import ServerState
from genie.server.stats import Stats, StatsCollector
from genie.server.store import TensorStore

__all__ = ["create_app"]

log = logging.getLogger("genie.server")


def create_app(config: ServerConfig | None = None) -> Starlette:
    """Build a Genie app.  Resolving the device happens here, so a bad ``--device``
    fails at start-up rather than on the first request."""
    config = config or ServerConfig()
    dev = resolve_device(config.device)
    store = TensorStore(config.max_held_bytes)
    counters = Stats(store.usage)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatsCollector(counters))
    executor = Executor(dev, max_alloc_bytes=config.max_held_bytes or config.max_body_bytes,
                        compute_threads=config.compute_threads, max_inflight=config.max_inflight)
    state = ServerState(config=config, executor=executor, store=store, stats=counters,
                        registry=registry, bodies=BodyBudget(config.max_inflight_body_bytes),
                        device_info=describe(dev))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("genie %s serving on %s (%d ops, auth %s)", __version__, dev, len(REGISTRY),
                 "on" if config.token else "off")
        # Before serving: the first meta inference (allocation cap) costs ~1.5 s once per
        # process.  Not in a daemon thread: one still inside torch at exit aborts it.
        await anyio.to_thread.run_sync(warm_up)
        yield
        store.clear()

    routes = [
        Route("/health", authorized(ep.health), methods=["GET"]),
        Route("/ops", authorized(ep.ops), methods=["GET"]),
        Route("/stats", authorized(ep.stats), methods=["GET"]),
        Route("/metrics", authorized(ep.metrics), methods=["GET"]),
        Route("/device", authorized(ep.device), methods=["GET"]),
        Route("/execute", authorized(ep.execute), methods=["POST"]),
        Route("/graph", authorized(ep.graph), methods=["POST"]),
        Route("/echo", authorized(ep.echo), methods=["POST"]),
        Route("/tensors", authorized(ep.put_tensor), methods=["POST"]),
        Route("/tensors", authorized(ep.list_tensors), methods=["GET"]),
        Route("/tensors/{handle}", authorized(ep.get_tensor), methods=["GET"]),
        Route("/tensors/{handle}", authorized(ep.delete_tensor), methods=["DELETE"]),
    ]
    middleware = [Middleware(AccountingMiddleware),
                  Middleware(ReleaseBodyBudget, budget=state.bodies)]
    if config.debug_delay_ms > 0:  # test-only: a deliberately slow server
        middleware.insert(1, Middleware(DebugDelayMiddleware, delay_s=config.debug_delay_ms / 1000))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.genie = state
    return app

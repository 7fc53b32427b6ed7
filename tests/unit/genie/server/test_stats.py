"""Request statistics (genie.server.stats): ``/stats`` counts requests, bytes and
failures by type per endpoint, and ``/metrics`` is Prometheus text that agrees with it."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import torch
from prometheus_client.parser import text_string_to_metric_families


def test_metrics_is_prometheus_text_matching_stats(http: httpx.Client, x: torch.Tensor,
                                                   st_body: Callable[..., bytes]) -> None:
    http.post("/execute?op=relu", content=st_body({"x": x}))
    http.post("/execute?op=nope", content=st_body({"x": x}))
    resp = http.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    for name in ("genie_requests", "genie_request_failures", "genie_request_bytes",
                 "genie_response_bytes", "genie_compute_seconds",
                 "genie_request_latency_seconds", "genie_held_tensors", "genie_held_bytes"):
        assert name in families, name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    stats = http.get("/stats").json()["endpoints"]["POST /execute"]
    # /metrics was read before /stats: the counters can only have grown in between.
    assert 1 <= samples[("genie_requests_total", (("endpoint", "POST /execute"),))] <= stats["count"]
    assert samples[("genie_request_failures_total",
                    (("endpoint", "POST /execute"), ("type", "unsupported_op")))] >= 1


def test_stats_count_per_endpoint(http: httpx.Client, x: torch.Tensor, st_body: Callable[..., bytes]) -> None:
    before = http.get("/stats").json()
    body = st_body({"x": x})
    http.post("/echo", content=body)
    http.post("/echo", content=body)
    ep_before = before["endpoints"].get("POST /echo", {"count": 0, "successes": 0, "bytes_in": 0})
    # A streamed reply is recorded a moment after its last byte: wait for the count.
    deadline = time.monotonic() + 5.0
    while True:
        after = http.get("/stats").json()
        ep_after = after["endpoints"].get("POST /echo", ep_before)
        if ep_after["count"] - ep_before["count"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert ep_after["count"] - ep_before["count"] == 2
    assert ep_after["successes"] - ep_before["successes"] == 2
    assert ep_after["bytes_in"] - ep_before["bytes_in"] == 2 * len(body)
    assert ep_after["latency_ms"]["p50"] > 0
    assert after["requests"]["total"] >= before["requests"]["total"] + 3


def test_per_endpoint_failures_by_type(http: httpx.Client, good_body: bytes,
                                       wait_for_errors: Callable[..., dict[str, int]],
                                       delta: Callable[..., dict[str, int]]) -> None:
    before = http.get("/stats").json()["endpoints"].get("POST /graph", {"failures_by_type": {}})
    http.post("/graph", content=good_body)
    http.post("/graph", content=b"junk")
    wait_for_errors(http, {}, 0)
    after = http.get("/stats").json()["endpoints"]["POST /graph"]
    assert delta(before["failures_by_type"], after["failures_by_type"]) == {"malformed_request": 2}

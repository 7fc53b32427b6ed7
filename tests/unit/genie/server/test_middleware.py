"""What wraps every request (genie.server.middleware): with a token configured, every
route needs ``Authorization: Bearer <token>`` and anything else is a counted 401; with
none, no header is needed and a stray one is ignored."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import torch

from genie.server.runner import BackgroundServer


def test_token_required_when_configured(
        make_server: Callable[..., BackgroundServer], good_body: bytes,
        tensors_of: Callable[..., dict[str, torch.Tensor]], assert_error: Callable[..., str],
        assert_serving: Callable[..., None]) -> None:
    srv = make_server(token="s3cret")
    good = {"authorization": "Bearer s3cret"}
    with httpx.Client(base_url=srv.url) as http:
        assert http.get("/health", headers=good).json()["auth"] is True
        cases = [({}, "/health"), ({"authorization": "Bearer wrong"}, "/health"),
                 ({"authorization": "s3cret"}, "/stats"), ({"authorization": "Basic s3cret"}, "/ops"),
                 ({"authorization": "Bearer s3cret2"}, "/metrics"),
                 ({"authorization": "Bearer"}, "/tensors")]
        for headers, path in cases:
            resp = http.get(path, headers=headers)
            assert_error(resp, 401, "unauthorized")
            assert resp.headers["www-authenticate"] == "Bearer"
        resp = http.post("/execute?op=relu", content=good_body)
        assert_error(resp, 401, "unauthorized")
        stats = http.get("/stats", headers=good).json()
        assert stats["errors_by_type"] == {"unauthorized": len(cases) + 1}
        assert_serving(http, headers=good)
        assert tensors_of(http.post("/echo", content=good_body, headers={"Authorization": "bearer s3cret"}))


def test_no_token_means_no_header_needed(http: httpx.Client) -> None:
    assert http.get("/health").status_code == 200
    # A stray Authorization header is ignored when the server has no token.
    assert http.get("/health", headers={"authorization": "Bearer whatever"}).status_code == 200

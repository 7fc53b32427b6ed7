"""What wraps every request (genie.server.middleware): with a token configured, every
route needs ``Authorization: Bearer <token>`` and anything else is a counted 401; with
none, no header is needed and a stray one is ignored.  The test-only delay slows every
request by what it says, without serialising them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
import torch

from genie.server.config import ServerConfig
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


def test_a_trailing_slash_is_404_not_a_redirect_before_auth(
        make_server: Callable[..., BackgroundServer], assert_error: Callable[..., str]) -> None:
    # Starlette's slash redirect answered /tensors/{id}/ with a 307 before the token check.
    srv = make_server(token="s3cret")
    with httpx.Client(base_url=srv.url) as http:
        for path in ("/tensors/abc/", "/health/", "/tensors/"):
            assert_error(http.get(path), 404, "not_found")
            assert_error(http.get(path, headers={"authorization": "Bearer s3cret"}), 404,
                         "not_found")


@pytest.mark.parametrize("token", ["", " ", "pässwörd", "two words", "tab\there"])
def test_a_token_no_client_could_send_refuses_to_start(token: str) -> None:
    with pytest.raises(ValueError, match="token"):
        ServerConfig(token=token)


def test_the_token_is_compared_as_the_bytes_sent(
        make_server: Callable[..., BackgroundServer], assert_error: Callable[..., str]) -> None:
    srv = make_server(token="t0k3n!#$%&'*+-.^_`|~")
    with httpx.Client(base_url=srv.url) as http:
        good = {"authorization": "Bearer t0k3n!#$%&'*+-.^_`|~"}
        assert http.get("/health", headers=good).status_code == 200
        latin = {"authorization": "Bearer t0k3n!#$%&'*+-.^_`|~\xe9".encode("latin-1")}
        assert_error(http.get("/health", headers=latin), 401, "unauthorized")


def test_debug_delay_slows_every_request_without_serialising_them(
        make_server: Callable[..., BackgroundServer]) -> None:
    slow = make_server(debug_delay_ms=300)
    with httpx.Client(base_url=slow.url, timeout=30) as c:
        c.get("/health")  # the connection is open: what follows is the delay, not a connect
        start = time.perf_counter()
        assert c.get("/health").status_code == 200
        assert time.perf_counter() - start >= 0.3
    elapsed: list[float] = []

    def one() -> None:
        began = time.perf_counter()
        httpx.post(f"{slow.url}/execute", params={"op": "relu"}, content=b"", timeout=30)
        elapsed.append(time.perf_counter() - began)

    threads = [threading.Thread(target=one) for _ in range(4)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert min(elapsed) >= 0.3
    assert time.perf_counter() - start < 4 * 0.3, "the delays ran one after another"

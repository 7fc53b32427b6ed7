"""The server app (genie.server.app): everything an app owns lives on its own state,
so two apps in one process share no handles and no counts."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from genie.server.runner import BackgroundServer


def test_two_apps_in_one_process_share_nothing(make_server: Callable[..., BackgroundServer], good_body: bytes,
                                               assert_error: Callable[..., str]) -> None:
    a, b = make_server(), make_server()
    with httpx.Client(base_url=a.url) as ha, httpx.Client(base_url=b.url) as hb:
        handle = ha.post("/tensors", content=good_body).json()["id"]
        ha.post("/execute?op=nope", content=good_body)
        assert_error(hb.get(f"/tensors/{handle}"), 404, "not_found")
        sa, sb = ha.get("/stats").json(), hb.get("/stats").json()
        assert sa["held"]["tensors"] == 1 and sb["held"]["tensors"] == 0
        assert sa["errors_by_type"] == {"unsupported_op": 1}
        assert sb["errors_by_type"] == {"not_found": 1}
        assert "POST /tensors" in sa["endpoints"] and "POST /tensors" not in sb["endpoints"]
        assert a.app.state.genie is not b.app.state.genie

"""Where graphs run (genie.lazy.session): a tensor made with ``client=`` and what is
computed from it run there; with no client anywhere the error names the three ways to
configure one; ``GENIE_SERVER_URL``, an explicit ``client=`` and
``genie.capture(client=)`` each choose the server."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.testing import assert_close

import genie
from genie.server.runner import BackgroundServer


def test_computed_tensors_run_where_their_inputs_were_made(
        server: BackgroundServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """No default client: a tensor made with ``client=``, what is computed from it and
    what was fetched through it (or through ``materialize(client=)``) run there."""
    monkeypatch.delenv("GENIE_SERVER_URL", raising=False)
    genie.disconnect()
    with genie.Client(server.url, retries=0) as c:
        lx = genie.remote(torch.tensor([-1.0, 0.0, 1.0, 2.0]), client=c)
        h = lx.relu()
        assert h.cpu().tolist() == [0.0, 0.0, 1.0, 2.0]
        assert_close(genie.materialize(h + 1), torch.tensor([1.0, 1.0, 2.0, 3.0]))
        y = genie.remote(torch.ones(2)) * 3
        assert genie.materialize(y, client=c).tolist() == [3.0, 3.0]
        assert (y - 1).tolist() == [2.0, 2.0]
        assert c.requests == 4
    with pytest.raises(genie.ConfigurationError, match="GENIE_SERVER_URL"):
        genie.materialize(genie.remote(torch.ones(1)) + 1)  # nothing named a client


def test_no_server_configured_names_the_three_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENIE_SERVER_URL", raising=False)
    genie.disconnect()
    t: Any = genie.remote(torch.ones(3)) + 1  # capturing needs no server
    assert t.shape == (3,)
    with pytest.raises(genie.ConfigurationError) as info:
        t.materialize()
    message = str(info.value)
    assert "GENIE_SERVER_URL" in message and "genie.connect" in message and "client=" in message


def test_server_from_environment_and_explicit_client(
        server: BackgroundServer, monkeypatch: pytest.MonkeyPatch) -> None:
    genie.disconnect()
    monkeypatch.setenv("GENIE_SERVER_URL", server.url)
    assert (genie.remote(torch.ones(2)) * 3).tolist() == [3.0, 3.0]
    monkeypatch.delenv("GENIE_SERVER_URL")
    with genie.Client(server.url) as explicit:
        t = genie.remote(torch.ones(2)) + 1
        assert genie.materialize(t, client=explicit).tolist() == [2.0, 2.0]
        assert explicit.requests == 1
        with genie.capture(client=explicit):
            assert (genie.remote(torch.ones(1)) - 1).item() == 0.0
        assert explicit.requests == 2

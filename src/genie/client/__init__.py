"""The Genie clients: ``Client`` (blocking) and ``AsyncClient`` (asyncio), one API.

``genie.client.calls`` plans each call and reads its reply (shared by both),
``genie.client.sync`` and ``genie.client.aio`` send plans, ``genie.client.http1`` is
the blocking client's plain-HTTP transport, ``genie.client.httpx_support`` what both
need to speak through httpx.
"""

from genie.client.aio import AsyncClient
from genie.client.calls import Disturbances, Exchange, GraphResult, Progress, RemoteTensor, Timeout
from genie.client.sync import Client

__all__ = ["AsyncClient", "Client", "Disturbances", "Exchange", "GraphResult", "Progress", "RemoteTensor",
           "Timeout"]

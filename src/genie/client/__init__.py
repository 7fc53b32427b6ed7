"""The Genie clients: ``Client`` (blocking) and ``AsyncClient`` (asyncio), one API.

Shared by both: ``genie.client.api`` (every API method, written once),
``genie.client.base`` (configuration, the session, retries, each exchange's handling),
``genie.client.calls`` (each call planned and its reply read), ``genie.client.timeout``
and ``genie.client.meter`` (figures, disturbances, progress).  ``genie.client.sync`` and
``genie.client.aio`` send plans; ``genie.client.http1`` is the plain-HTTP transport,
``genie.client.httpx_support`` what both need to speak through httpx.
"""

from genie.client.aio import AsyncClient
from genie.client.calls import GraphResult, RemoteTensor
from genie.client.meter import Disturbances, Exchange, Progress
from genie.client.sync import Client
from genie.client.timeout import Timeout

__all__ = ["AsyncClient", "Client", "Disturbances", "Exchange", "GraphResult", "Progress", "RemoteTensor",
           "Timeout"]

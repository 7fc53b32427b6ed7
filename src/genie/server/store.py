"""Server-resident tensors ("handles"): upload once, refer to them by id.

The byte budget is a promise to clients: an upload that would pass it is
refused (413 ``budget_exceeded``), and nothing a client still holds an id for is
ever evicted to make room.  Clients free memory with ``DELETE /tensors/{id}``.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import torch

from genie.errors import BudgetExceededError, NotFoundError
from genie.wire import dtype_name

__all__ = ["HANDLE_OVERHEAD_BYTES", "TensorStore", "handle_info"]

#: What holding one tensor costs beyond its data (the tensor object, its id, the map
#: entry: about 600 bytes measured), counted against the budget so that empty tensors
#: are not free: 50,000 of them once held 30 MB while the budget saw 0 bytes.
HANDLE_OVERHEAD_BYTES = 1024


def handle_info(handle_id: str, tensor: torch.Tensor) -> dict[str, Any]:
    """The JSON a client gets back for a held tensor."""
    return {
        "id": handle_id,
        "shape": list(tensor.shape),
        "dtype": dtype_name(tensor.dtype),
        "nbytes": tensor.numel() * tensor.element_size(),
    }


class TensorStore:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()
        self._tensors: dict[str, torch.Tensor] = {}
        self._bytes = 0

    def put_many(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
        """Hold all of ``tensors`` or none of them; returns key -> handle info."""
        # A view would pin its whole base storage while counting only its own bytes.
        owned = {k: (t if t.is_contiguous() and t.storage_offset() == 0
                     and t.untyped_storage().nbytes() == t.numel() * t.element_size()
                     else t.clone(memory_format=torch.contiguous_format))
                 for k, t in tensors.items()}
        need = sum(t.numel() * t.element_size() for t in owned.values())
        with self._lock:
            handles = (len(self._tensors) + len(owned)) * HANDLE_OVERHEAD_BYTES
            if self._bytes + need + handles > self.budget_bytes:
                raise BudgetExceededError(
                    f"holding {need} more bytes would exceed the server's --max-held-mb budget "
                    f"({self._bytes} of {self.budget_bytes} bytes held in "
                    f"{len(self._tensors)} tensors, each also counting "
                    f"{HANDLE_OVERHEAD_BYTES} bytes); DELETE /tensors/{{id}} to free some")
            out = {}
            for key, tensor in owned.items():
                handle_id = uuid.uuid4().hex
                self._tensors[handle_id] = tensor
                out[key] = handle_info(handle_id, tensor)
            self._bytes += need
        return out

    def get(self, handle_id: str) -> torch.Tensor:
        with self._lock:
            try:
                return self._tensors[handle_id]
            except KeyError:
                raise NotFoundError(f"unknown tensor handle {handle_id!r} "
                                    "(never created, or already deleted)") from None

    def delete(self, handle_id: str) -> dict[str, Any]:
        with self._lock:
            tensor = self._tensors.pop(handle_id, None)
            if tensor is None:
                raise NotFoundError(f"unknown tensor handle {handle_id!r} "
                                    "(never created, or already deleted)")
            info = handle_info(handle_id, tensor)
            self._bytes -= info["nbytes"]
        return info

    def list(self, limit: int | None = None, after: str | None = None) -> list[dict[str, Any]]:
        """Held tensors in the order they were stored: at most ``limit``, starting after
        the handle ``after`` (a page of ``GET /tensors``; unknown ``after``: 404)."""
        with self._lock:
            items = iter(self._tensors.items())
            if after is not None:
                if after not in self._tensors:
                    raise NotFoundError(f"unknown tensor handle {after!r} in 'after' "
                                        "(deleted since the last page?)")
                for key, _ in items:
                    if key == after:
                        break
            page = items if limit is None else itertools.islice(items, limit)
            return [handle_info(k, t) for k, t in page]

    def usage(self) -> tuple[int, int]:
        """(tensors held, bytes held)."""
        with self._lock:
            return len(self._tensors), self._bytes

    def clear(self) -> None:
        with self._lock:
            self._tensors.clear()
            self._bytes = 0

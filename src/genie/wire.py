"""The wire format: safetensors, written and read without extra copies.

Layout (the safetensors spec, which every body Genie sends or accepts follows)::

    [ 8 bytes: N, unsigned little-endian ]
    [ N bytes: UTF-8 JSON object, right-padded with spaces ]
        {"__metadata__": {"k": "v", ...},              # optional, str -> str
         "name": {"dtype": "F32", "shape": [2, 3],
                  "data_offsets": [begin, end]}, ...}  # offsets into the data part
    [ data: every tensor's raw little-endian bytes, back to back, no holes ]

Why our own reader and writer rather than ``safetensors.torch.save/load``: those
take and return one ``bytes`` object, which costs a whole-body copy on each side of
every request (and two on a 256 MB tensor).  ``encode`` returns the header plus a
memoryview per tensor, so a body can be streamed straight from tensor memory, and
``decode`` builds tensors that share the received buffer.  The tests check both
directions against the safetensors library itself.

The reader is defensive: a header length cap, JSON shape checks, dtype/shape/offset
consistency with overflow-free integer math, offsets that must tile the data part
exactly, and bool bytes restricted to 0/1.  Each failure raises ``WireFormatError``
(HTTP 400) naming what is wrong; an unknown dtype raises ``UnsupportedDTypeError``.
Bytes that are not safetensors but a pickle or a ``torch.save`` file (what the
original server took) raise ``UnsupportedMediaTypeError`` (415) with the one-line
conversion; they are recognised by their first bytes and never loaded.
"""

from __future__ import annotations

import json
import mmap
import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from genie.errors import UnsupportedDTypeError, UnsupportedMediaTypeError, WireFormatError

__all__ = [
    "CONVERSION",
    "DTYPE_NAMES",
    "Charge",
    "MAX_HEADER_BYTES",
    "Decoded",
    "Encoded",
    "decode",
    "dtype_from_name",
    "dtype_name",
    "encode",
    "foreign_format",
    "json_cost",
    "receive_buffer",
    "slices",
    "unshared",
]

#: Same cap as the safetensors library: a larger header is refused unread.
MAX_HEADER_BYTES = 100_000_000
#: At most this many dimensions per tensor, each below ``2**63`` (an int64 size).
MAX_RANK = 64
DIM_LIMIT = 1 << 63
_LEN = struct.Struct("<Q")

if sys.byteorder != "little":  # pragma: no cover - no big-endian CI here
    raise ImportError("genie.wire assumes a little-endian host, like safetensors' zero-copy path")


def _optional_dtype(name: str) -> torch.dtype | None:
    # Feature detection: older torch builds lack the unsigned and float8 types.
    return getattr(torch, name, None)


_CODE_TO_DTYPE: dict[str, torch.dtype] = {
    code: dt
    for code, dt in (
        ("BOOL", torch.bool),
        ("U8", torch.uint8),
        ("I8", torch.int8),
        ("I16", torch.int16),
        ("I32", torch.int32),
        ("I64", torch.int64),
        ("U16", _optional_dtype("uint16")),
        ("U32", _optional_dtype("uint32")),
        ("U64", _optional_dtype("uint64")),
        ("F16", torch.float16),
        ("BF16", torch.bfloat16),
        ("F32", torch.float32),
        ("F64", torch.float64),
        ("C64", torch.complex64),
        ("F8_E4M3", _optional_dtype("float8_e4m3fn")),
        ("F8_E5M2", _optional_dtype("float8_e5m2")),
    )
    if dt is not None
}
_DTYPE_TO_CODE: dict[torch.dtype, str] = {dt: code for code, dt in _CODE_TO_DTYPE.items()}

#: Friendly names accepted wherever an op argument is a dtype ("float32", "bf16", ...).
DTYPE_NAMES: dict[str, torch.dtype] = {
    **{str(dt).removeprefix("torch."): dt for dt in _DTYPE_TO_CODE},
    "float": torch.float32, "half": torch.float16, "double": torch.float64,
    "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
    "fp64": torch.float64, "int": torch.int32, "long": torch.int64,
}


def dtype_name(dtype: torch.dtype) -> str:
    """The canonical name of a dtype on the wire, e.g. ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name: object) -> torch.dtype:
    """Parse a dtype name from the wire; only dtypes the wire format carries exist."""
    if isinstance(name, str) and name.removeprefix("torch.") in DTYPE_NAMES:
        return DTYPE_NAMES[name.removeprefix("torch.")]
    raise UnsupportedDTypeError(
        f"unsupported dtype {name!r}; supported: {', '.join(sorted(DTYPE_NAMES))}"
    )


@dataclass(frozen=True)
class Encoded:
    """A safetensors body as chunks: the header, then one memoryview per tensor.

    The memoryviews alias the tensors' memory; keep this object alive until the
    bytes are sent.  ``nbytes`` is the exact body length, for Content-Length.
    """

    chunks: tuple[bytes | memoryview, ...]
    nbytes: int

    def to_bytes(self) -> bytes:
        """One contiguous copy of the body (for small bodies, files and tests)."""
        return b"".join(self.chunks)


@dataclass
class Decoded:
    """Tensors (in header order) and the string metadata of one safetensors body."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


#: Bodies at least this large are received into pre-populated anonymous memory.
POPULATE_MIN_BYTES = 1024 * 1024
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def slices(chunks: Sequence[bytes | memoryview], size: int) -> Iterator[memoryview]:
    """``chunks`` (an ``Encoded`` body) as memoryviews of at most ``size`` bytes, with no
    copy: how the client's upload and the server's streamed reply hand a body to a socket."""
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        for start in range(0, len(view), size):
            yield view[start:start + size]


def receive_buffer(nbytes: int) -> bytearray | mmap.mmap:
    """A writable buffer of ``nbytes`` to receive a body into; tensors may alias it.

    Why not always a ``bytearray``: filling fresh memory faults it in one 4 KiB page
    at a time, which on a virtual machine costs more than the copy itself (about
    130 ms for 256 MB on the benchmark machine).  ``MAP_POPULATE`` maps the whole
    buffer in one system call instead (about 60 ms).  Small bodies keep ``bytearray``.
    """
    if nbytes < POPULATE_MIN_BYTES or not _MAP_POPULATE:
        return bytearray(nbytes)
    return mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_POPULATE)


def _refs(buf: mmap.mmap) -> int:
    # Shaped as ``unshared`` is (one call, the argument counted once more by
    # getrefcount), so that both count a buffer alike.
    return sys.getrefcount(buf)


_probe = [mmap.mmap(-1, mmap.PAGESIZE)]
#: The count of a buffer that one list item or attribute holds and nothing else.
_SOLE_HOLDER_REFS = _refs(_probe[0])
del _probe


def unshared(buf: mmap.mmap) -> bool:
    """Whether a kept receive buffer may take the next body: nothing but its keeper (the
    one list item or attribute passed as ``buf``) refers to it.  A tensor decoded from
    it keeps the buffer object alive (``torch.frombuffer``), a memoryview exports it:
    either counts, and a buffer still in use must never see another body's bytes."""
    return sys.getrefcount(buf) <= _SOLE_HOLDER_REFS


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """A flat byte view of a CPU, contiguous copy-free form of ``tensor``."""
    flat = tensor.reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    if flat.stride(0) != 1:
        # Contiguous yet strided: torch ignores the stride of a size-1 dim, so the real
        # part of a one-element complex tensor is "contiguous" with stride 2.
        flat = flat.clone(memory_format=torch.contiguous_format)
    return flat.view(torch.uint8).numpy().data.cast("B")


def _prepare(tensor: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor {name!r} is a {type(tensor).__name__}, not a torch.Tensor")
    if tensor.dtype not in _DTYPE_TO_CODE:
        raise UnsupportedDTypeError(
            f"tensor {name!r} has dtype {tensor.dtype}, which safetensors cannot carry; "
            f"cast it to one of: {', '.join(sorted(map(dtype_name, _DTYPE_TO_CODE)))}"
        )
    t = tensor.detach()
    if type(t) is not torch.Tensor:
        t = t.as_subclass(torch.Tensor)
    if t.device.type != "cpu":
        t = t.cpu()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    return t.contiguous()


def encode(tensors: Mapping[str, torch.Tensor],
           metadata: Mapping[str, str] | None = None) -> Encoded:
    """Lay out ``tensors`` (any device, any strides) as a safetensors body.

    Tensors are placed widest dtype first, like the safetensors library, so that
    every tensor's data starts aligned to its element size.
    """
    prepared = [(name, _prepare(t, name)) for name, t in tensors.items()]
    prepared.sort(key=lambda item: (-item[1].element_size(), item[0]))
    header: dict[str, object] = {}
    if metadata:
        bad = [k for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
        if bad:
            raise TypeError(f"safetensors metadata must map str to str; bad keys: {bad}")
        header["__metadata__"] = dict(metadata)
    views: list[memoryview] = []
    offset = 0
    for name, t in prepared:
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved and cannot name a tensor")
        view = _tensor_bytes(t)
        header[name] = {
            "dtype": _DTYPE_TO_CODE[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + view.nbytes],
        }
        offset += view.nbytes
        views.append(view)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(len(raw)) % 8)  # data starts 8-aligned
    head = _LEN.pack(len(raw)) + raw
    chunks: tuple[bytes | memoryview, ...] = (head, *(v for v in views if v.nbytes))
    return Encoded(chunks=chunks, nbytes=len(head) + offset)


def _fail(msg: str) -> WireFormatError:
    return WireFormatError(f"invalid safetensors body: {msg}")


#: A callback told what parsing will cost before it starts (bytes, what): it may refuse.
Charge = Callable[[int, str], None]


def json_cost(text: bytes | str) -> int:
    """An upper bound of the memory ``json.loads(text)`` takes, found without parsing.

    Parsed JSON costs up to 30 times its text: ``[],`` is 3 bytes of text and a 56-byte
    list plus its 8-byte slot in the parent.  So an 85 MB header of empty lists once
    took 2.2 GB to parse.  Counting brackets, commas and colons (C-speed ``count``)
    bounds the number of containers and values, whatever nesting or strings hide them
    (a bracket inside a string is counted too: the bound only grows).  Each container
    is charged 600 bytes (what a tensor entry of a safetensors header becomes once
    decoded), each value 64, each character 10 (the text decoded, at 4 bytes a
    character in the worst case, and strings parsed out of it), plus 4 KiB.
    """
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    containers = text.count(b"[") + text.count(b"{")
    values = containers + text.count(b",") + text.count(b":") + 1
    return 4096 + 10 * len(text) + 600 * containers + 64 * values


def parse_header(buf: bytes | bytearray | memoryview, charge: Charge | None = None
                 ) -> tuple[int, dict[str, object]]:
    """Read and check the header; returns (data start, header dict).

    ``charge`` is told the header's ``json_cost`` before it is parsed, and may refuse.
    """
    total = len(buf)
    if total < 8:
        raise _fail(f"{total} bytes; a safetensors body starts with an 8-byte header length")
    (n,) = _LEN.unpack_from(buf, 0)
    if n > MAX_HEADER_BYTES:
        raise _fail(f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > total:
        raise _fail(f"header claims {n} bytes but only {total - 8} follow (truncated?)")
    raw = bytes(buf[8:8 + n])
    if charge is not None:
        charge(json_cost(raw), f"parsing its {n}-byte header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # also: ints past 4300 digits, deep nesting
        raise _fail(f"header is not UTF-8 JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise _fail("header must be a JSON object")
    return 8 + n, header


def _nbytes(shape: list[int], itemsize: int, data_len: int) -> int | None:
    """The bytes of a tensor of ``shape``, or ``None`` when it cannot be one here.

    Multiplies with an early exit, so the work is a few steps whatever the dims:
    ``None`` once the data would pass ``data_len``, or once the product of the dims
    (zeros counted as 1, which is what torch's stride and storage arithmetic does)
    passes int64, where torch would refuse the shape with an overflow error.
    """
    empty = 0 in shape
    extent = 1
    for d in shape:
        extent *= max(d, 1)
        if extent >= DIM_LIMIT or (not empty and extent * itemsize > data_len):
            return None
    return 0 if empty else extent * itemsize


def _entries(header: dict[str, object], data_len: int
             ) -> Iterable[tuple[str, torch.dtype, list[int], int, int]]:
    """Every tensor entry, checked as a whole before any is returned, in header order.

    The whole layout is checked first: a body whose data is shorter than its header
    claims must be refused before any tensor is sliced out of it.
    """
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise _fail(f"tensor {name!r} needs exactly dtype, shape and data_offsets")
        code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(code, str):
            raise _fail(f"tensor {name!r} dtype must be a string")
        if code not in _CODE_TO_DTYPE:
            raise UnsupportedDTypeError(
                f"tensor {name!r} has dtype {code!r}; supported: {', '.join(_CODE_TO_DTYPE)}"
            )
        # Bounded before any arithmetic: products of huge ints cost quadratic time.
        if not (isinstance(shape, list) and len(shape) <= MAX_RANK
                and all(type(d) is int and 0 <= d < DIM_LIMIT for d in shape)):
            raise _fail(f"tensor {name!r} shape must be a list of at most {MAX_RANK} "
                        "integers, each in [0, 2**63)")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_len):
            raise _fail(f"tensor {name!r} data_offsets must be [begin, end] with "
                        f"0 <= begin <= end <= {data_len} (the data part's length)")
        dtype = _CODE_TO_DTYPE[code]
        expected = _nbytes(shape, dtype.itemsize, data_len)
        if expected is None:
            raise _fail(f"tensor {name!r} {code} of {len(shape)} dims is larger than the "
                        f"body's {data_len} data bytes (or than torch can index)")
        if offsets[1] - offsets[0] != expected:
            raise _fail(f"tensor {name!r} {code}{shape} needs {expected} bytes, "
                        f"data_offsets give {offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], name, dtype, shape))
    cursor = 0
    for begin, end, name, _, _ in sorted(spans, key=lambda s: (s[0], s[1])):
        if begin != cursor:
            raise _fail(f"tensor {name!r} starts at {begin}, expected {cursor} "
                        "(data must be covered exactly, without holes or overlaps)")
        cursor = end
    if cursor != data_len:
        raise _fail(f"tensors cover {cursor} data bytes but the body has {data_len}")
    return [(name, dtype, shape, begin, end) for begin, end, name, dtype, shape in spans]


#: The one line that turns a tensor ``t`` into a body Genie accepts.
CONVERSION = 'safetensors.torch.save_file({"x": t}, "x.safetensors")'
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # the PROTO opcode that starts every pickle of protocol 2 and later


def foreign_format(buf: bytes | bytearray | memoryview | mmap.mmap) -> str | None:
    """What a body that is not safetensors is instead, when its first bytes say so.

    ``torch.save`` writes a zip archive (``PK\\x03\\x04``) since torch 1.6 and a bare
    pickle before; ``pickle.dumps`` writes ``\\x80`` and the protocol number (2 to 5).
    Only asked once a body has failed to parse as safetensors: a valid safetensors
    header length may begin with the same bytes.
    """
    head = bytes(memoryview(buf).cast("B")[:4])
    if head == _ZIP_MAGIC:
        return "a torch.save file (a zip archive holding a pickle)"
    if len(head) >= 2 and head[0] == _PICKLE_PROTO and 2 <= head[1] <= 5:
        return "a pickle (what pickle.dumps and torch.save before torch 1.6 write)"
    return None


def decode(buf: bytes | bytearray | memoryview | mmap.mmap, charge: Charge | None = None
           ) -> Decoded:
    """Parse a safetensors body into CPU tensors.

    With a writable buffer (``bytearray``), tensors share its memory: no copy.  A
    read-only buffer (``bytes``), or data not aligned to its element size, is copied
    per tensor, because torch must not alias memory it cannot write.  ``charge``: see
    ``parse_header``.
    """
    view = memoryview(buf).cast("B")
    try:
        start, header = parse_header(view, charge)
    except WireFormatError:
        what = foreign_format(view)
        if what is None:
            raise
        raise UnsupportedMediaTypeError(
            f"the tensor data sent is {what}, not safetensors: pickle is refused for safety "
            f"(loading it runs whatever code the bytes name). Convert the tensor t once with "
            f"{CONVERSION} and send that file") from None
    out = Decoded()
    meta = header.get("__metadata__", {})
    if not (isinstance(meta, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())):
        raise _fail("__metadata__ must be an object mapping strings to strings")
    out.metadata = meta
    writable = not view.readonly
    for name, dtype, shape, begin, end in _entries(header, len(view) - start):
        if begin == end:
            out.tensors[name] = torch.empty(shape, dtype=dtype)
            continue
        chunk = view[start + begin:start + end]
        if not writable or (start + begin) % dtype.itemsize:
            chunk = memoryview(bytearray(chunk))
        t = torch.frombuffer(chunk, dtype=torch.uint8)
        if dtype is torch.bool and bool((t > 1).any()):
            raise _fail(f"tensor {name!r} is BOOL but holds bytes other than 0 and 1")
        out.tensors[name] = t.view(dtype).reshape(shape)
    return out

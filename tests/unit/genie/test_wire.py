"""The wire format (genie.wire): exact round trips, interop with the safetensors
library in both directions, zero-copy decoding, and a reader that refuses every
malformed body with the documented error instead of crashing or guessing."""

from __future__ import annotations

import io
import json
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
import safetensors
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genie.errors import (
    MalformedRequestError,
    UnsupportedDTypeError,
    UnsupportedMediaTypeError,
    WireFormatError,
    error_class_for,
)
from genie.wire import (
    CONVERSION,
    MAX_HEADER_BYTES,
    decode,
    dtype_from_name,
    dtype_name,
    encode,
    foreign_format,
)

#: Every dtype the wire carries, by its safetensors code.
WIRE_DTYPES: dict[str, torch.dtype] = {
    "F16": torch.float16, "F32": torch.float32, "F64": torch.float64, "BF16": torch.bfloat16,
    "I8": torch.int8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
    "U8": torch.uint8, "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64,
    "BOOL": torch.bool, "C64": torch.complex64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a tensor, so NaN payloads, -0.0 and float8 compare exactly."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def random_tensor(dtype: torch.dtype, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Arbitrary bit patterns of ``dtype`` (bool: only 0 and 1, the only valid bytes)."""
    gen = torch.Generator().manual_seed(seed)
    n = 1
    for d in shape:
        n *= d
    if dtype is torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    raw = torch.randint(0, 256, (n * dtype.itemsize,), generator=gen, dtype=torch.uint8)
    return raw.view(dtype).reshape(shape)


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype
    assert a.shape == b.shape
    assert torch.equal(bits(a), bits(b))


def body(header: Any, data: bytes = b"", *, length: int | None = None) -> bytes:
    """A hand-made safetensors body; ``length`` overrides the declared header length."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


# --- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(WIRE_DTYPES))
def test_every_dtype_round_trips_bit_exact(code: str) -> None:
    t = random_tensor(WIRE_DTYPES[code], (3, 5), seed=len(code))
    encoded = encode({"x": t})
    header = json.loads(encoded.to_bytes()[8:].split(b"}}", 1)[0] + b"}}")
    assert header["x"]["dtype"] == code
    assert_same(decode(encoded.to_bytes()).tensors["x"], t)
    assert_same(decode(bytearray(encoded.to_bytes())).tensors["x"], t)


@pytest.mark.parametrize("code", sorted(WIRE_DTYPES))
@pytest.mark.parametrize("shape", [(), (0,), (4, 0, 3), (1,), (1, 1, 1, 1), (2, 3, 4, 5)],
                         ids=str)
def test_edge_shapes_round_trip(code: str, shape: tuple[int, ...]) -> None:
    t = random_tensor(WIRE_DTYPES[code], shape, seed=7)
    out = decode(encode({"t": t}).to_bytes()).tensors["t"]
    assert_same(out, t)


def test_special_float_values_survive() -> None:
    t = torch.tensor([float("nan"), float("inf"), float("-inf"), -0.0, 0.0, 1e-45, 3.4e38])
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        x = t.to(dtype)
        assert_same(decode(encode({"x": x}).to_bytes()).tensors["x"], x)


def test_integer_extremes_survive() -> None:
    for dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
                  torch.uint16, torch.uint32, torch.uint64):
        info = torch.iinfo(dtype)
        x = torch.tensor([info.min, info.max, 0], dtype=dtype)
        assert_same(decode(encode({"x": x}).to_bytes()).tensors["x"], x)


@pytest.mark.parametrize("make", [
    lambda: torch.arange(12.0).reshape(3, 4).t(),
    lambda: torch.arange(24.0).reshape(2, 3, 4).permute(2, 0, 1),
    lambda: torch.arange(20).reshape(4, 5)[1:3, ::2],
    lambda: torch.arange(10.0)[3:8],
    lambda: torch.arange(10.0).flip(0)[::3],
    lambda: torch.arange(3.0).expand(4, 3),
    lambda: torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64).conj(),
    lambda: torch.tensor([1 + 2j, 3 + 0j], dtype=torch.complex64).conj().imag,
    lambda: torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
], ids=["transposed", "permuted", "strided-slice", "offset-slice", "step", "expanded",
        "conj-view", "neg-view", "channels-last"])
def test_non_contiguous_views_encode_their_values(make: Any) -> None:
    t = make()
    out = decode(encode({"v": t}).to_bytes()).tensors["v"]
    assert out.shape == t.shape
    assert torch.equal(out, t.resolve_conj().resolve_neg().contiguous())
    assert out.is_contiguous()


def test_large_tensor_round_trip() -> None:
    t = torch.randn(1024, 2048)  # 8 MiB
    encoded = encode({"big": t})
    assert encoded.nbytes == len(encoded.to_bytes())
    assert torch.equal(decode(bytearray(encoded.to_bytes())).tensors["big"], t)


def test_many_tensors_and_metadata_round_trip() -> None:
    tensors = {f"t{i}": random_tensor(dt, (i % 3 + 1, 2), seed=i)
               for i, dt in enumerate(WIRE_DTYPES.values())}
    meta = {"genie.graph": '{"nodes": []}', "unicode": "héllo ✓", "empty": ""}
    out = decode(encode(tensors, meta).to_bytes())
    assert set(out.tensors) == set(tensors)
    for name, t in tensors.items():
        assert_same(out.tensors[name], t)
    assert out.metadata == meta


def test_data_is_aligned_for_every_tensor() -> None:
    # Mixed widths: each tensor must start at a multiple of its element size, or a
    # zero-copy reader (ours, safetensors, numpy) has to copy or crash.
    tensors = {"a": torch.ones(3, dtype=torch.uint8), "b": torch.ones(3, dtype=torch.float64),
               "c": torch.ones(1, dtype=torch.int16), "d": torch.ones(5, dtype=torch.float32)}
    raw = encode(tensors).to_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8:8 + n])
    for name, t in tensors.items():
        assert header[name]["data_offsets"][0] % t.element_size() == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dtype=st.sampled_from(sorted(WIRE_DTYPES.values(), key=str)),
       shape=st.lists(st.integers(0, 5), max_size=4).map(tuple),
       seed=st.integers(0, 2**31 - 1),
       transpose=st.booleans(), writable=st.booleans())
def test_round_trip_property(dtype: torch.dtype, shape: tuple[int, ...], seed: int,
                             transpose: bool, writable: bool) -> None:
    t = random_tensor(dtype, shape, seed)
    if transpose and t.dim() >= 2:
        t = t.transpose(0, -1)
    raw = encode({"x": t}, {"seed": str(seed)}).to_bytes()
    out = decode(bytearray(raw) if writable else raw)
    assert_same(out.tensors["x"], t)
    assert out.metadata == {"seed": str(seed)}


# --- interop with the safetensors library --------------------------------------------


@pytest.mark.parametrize("code", sorted(WIRE_DTYPES))
def test_safetensors_library_bytes_decode(code: str) -> None:
    tensors = {"weight": random_tensor(WIRE_DTYPES[code], (4, 3), seed=1),
               "scalar": random_tensor(WIRE_DTYPES[code], (), seed=2),
               "empty": random_tensor(WIRE_DTYPES[code], (0, 2), seed=3)}
    raw = safetensors.torch.save(tensors, metadata={"format": "pt"})
    out = decode(raw)
    assert out.metadata == {"format": "pt"}
    for name, t in tensors.items():
        assert_same(out.tensors[name], t)


@pytest.mark.parametrize("code", sorted(WIRE_DTYPES))
def test_our_bytes_load_in_safetensors_library(code: str, tmp_path: Path) -> None:
    tensors = {"a": random_tensor(WIRE_DTYPES[code], (2, 3), seed=4).t(),
               "b": random_tensor(WIRE_DTYPES[code], (), seed=5)}
    raw = encode(tensors, {"who": "genie"}).to_bytes()
    loaded = safetensors.torch.load(raw)
    for name, t in tensors.items():
        assert_same(loaded[name], t)
    path = tmp_path / "x.safetensors"
    path.write_bytes(raw)
    with safetensors.safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"who": "genie"}


# --- zero copy ------------------------------------------------------------------------


def test_decode_of_bytearray_shares_memory() -> None:
    t = torch.arange(16, dtype=torch.float32)
    buf = bytearray(encode({"x": t}).to_bytes())
    out = decode(buf).tensors["x"]
    base = torch.frombuffer(buf, dtype=torch.uint8).data_ptr()
    assert base <= out.data_ptr() < base + len(buf)
    # Writing the buffer is visible through the tensor: they are the same memory.
    start = out.data_ptr() - base
    buf[start:start + 4] = struct.pack("<f", 42.0)
    assert out[0].item() == 42.0


def test_decode_of_bytes_copies_into_writable_tensors() -> None:
    raw = encode({"x": torch.arange(4, dtype=torch.int64)}).to_bytes()
    out = decode(raw).tensors["x"]
    out += 1  # would fail or corrupt an immutable bytes object if it aliased it
    assert out.tolist() == [1, 2, 3, 4]
    assert decode(raw).tensors["x"].tolist() == [0, 1, 2, 3]


def test_encode_chunks_alias_tensor_memory() -> None:
    t = torch.arange(8, dtype=torch.float32)
    encoded = encode({"x": t})
    assert len(encoded.chunks) == 2
    t[0] = 99.0  # chunks are views: the body sent is the tensor as it is at send time
    assert decode(encoded.to_bytes()).tensors["x"][0].item() == 99.0


# --- dtype names and what encode refuses ---------------------------------------------


def test_dtype_names_parse() -> None:
    for dt in WIRE_DTYPES.values():
        assert dtype_from_name(dtype_name(dt)) is dt
        assert dtype_from_name(str(dt)) is dt  # "torch.float32" too
    assert dtype_from_name("bf16") is torch.bfloat16
    assert dtype_from_name("long") is torch.int64
    for bad in ("float128", "complex128", "", None, 3, "torch.qint8"):
        with pytest.raises(UnsupportedDTypeError):
            dtype_from_name(bad)


def test_encode_refuses_what_safetensors_cannot_carry() -> None:
    with pytest.raises(UnsupportedDTypeError, match="complex128"):
        encode({"x": torch.zeros(2, dtype=torch.complex128)})
    with pytest.raises(TypeError):
        encode({"x": [1.0, 2.0]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="reserved"):
        encode({"__metadata__": torch.zeros(1)})
    with pytest.raises(TypeError, match="metadata"):
        encode({"x": torch.zeros(1)}, {"k": 1})  # type: ignore[dict-item]


# --- the defensive reader -------------------------------------------------------------

F32_2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}

#: 600 dims of 4000 digits (2.4 MB): multiplying them once froze a server for 13 s.
HUGE_RANK_HEADER = (b'{"x": {"dtype": "F32", "shape": [' + b",".join([b"9" * 4000] * 600)
                    + b'], "data_offsets": [0, 4]}}')


MALFORMED: dict[str, bytes] = {
    "empty": b"",
    "seven-bytes": b"\x01\x00\x00\x00\x00\x00\x00",
    "text-not-safetensors": b"hello, this is certainly not a safetensors file",
    "header-truncated": body(b'{"x": {"dtype": "F32"', length=500),
    "header-over-cap": struct.pack("<Q", MAX_HEADER_BYTES + 1) + b"{}",
    "header-length-max-u64": b"\xff" * 8 + b"{}",
    "header-not-json": body(b"{not json at all}"),
    "header-not-utf8": body(b'{"\xff\xfe": 1}'),
    "header-a-list": body([1, 2, 3]),
    "header-a-number": body(b"42"),
    "entry-not-object": body({"x": 5}),
    "entry-missing-offsets": body({"x": {"dtype": "F32", "shape": [2]}}, b"\0" * 8),
    "entry-extra-key": body({"x": {**F32_2, "extra": 1}}, b"\0" * 8),
    "dtype-not-string": body({"x": {**F32_2, "dtype": 5}}, b"\0" * 8),
    "shape-negative": body({"x": {**F32_2, "shape": [-2]}}, b"\0" * 8),
    "shape-float": body({"x": {**F32_2, "shape": [2.0]}}, b"\0" * 8),
    "shape-bool": body({"x": {**F32_2, "shape": [True, True]}}, b"\0" * 8),
    "shape-not-list": body({"x": {**F32_2, "shape": 2}}, b"\0" * 8),
    "shape-overflows": body({"x": {**F32_2, "shape": [2**62, 2**62]}}, b"\0" * 8),
    "offsets-not-list": body({"x": {**F32_2, "data_offsets": 8}}, b"\0" * 8),
    "offsets-three": body({"x": {**F32_2, "data_offsets": [0, 4, 8]}}, b"\0" * 8),
    "offsets-reversed": body({"x": {**F32_2, "data_offsets": [8, 0]}}, b"\0" * 8),
    "offsets-negative": body({"x": {**F32_2, "data_offsets": [-8, 0]}}, b"\0" * 8),
    "offsets-float": body({"x": {**F32_2, "data_offsets": [0.0, 8.0]}}, b"\0" * 8),
    "size-mismatch": body({"x": {**F32_2, "data_offsets": [0, 4]}}, b"\0" * 4),
    "data-truncated": body({"x": F32_2}, b"\0" * 4),
    "data-trailing": body({"x": F32_2}, b"\0" * 12),
    "data-hole-at-start": body({"x": {**F32_2, "data_offsets": [4, 12]}}, b"\0" * 12),
    "data-hole-between": body({"a": F32_2, "b": {**F32_2, "data_offsets": [12, 20]}},
                              b"\0" * 20),
    "data-overlap": body({"a": F32_2, "b": {**F32_2, "data_offsets": [4, 12]}}, b"\0" * 12),
    "data-same-span-twice": body({"a": F32_2, "b": F32_2}, b"\0" * 8),
    "bool-byte-two": body({"x": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}},
                          b"\x00\x01\x02"),
    "metadata-a-list": body({"__metadata__": ["a"], "x": F32_2}, b"\0" * 8),
    "metadata-int-value": body({"__metadata__": {"k": 1}, "x": F32_2}, b"\0" * 8),
    "metadata-nested": body({"__metadata__": {"k": {"a": "b"}}}),
    # json.loads raises plain ValueError / RecursionError for these, not JSONDecodeError.
    "int-over-python-digit-limit": body(b'{"x": {"dtype": "F32", "shape": [' + b"1" * 5000
                                        + b'], "data_offsets": [0, 4]}}', b"\0" * 4),
    "nested-too-deep": body(b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    # Shapes that made the reader multiply huge ints or hand torch an overflow.
    "shape-600-dims-of-4000-digits": body(HUGE_RANK_HEADER),
    "shape-65-dims": body({"x": {"dtype": "F32", "shape": [1] * 65, "data_offsets": [0, 4]}},
                          b"\0" * 4),
    "shape-dim-2**63-times-zero": body({"x": {"dtype": "F32", "shape": [2**63, 0],
                                              "data_offsets": [0, 0]}}),
    "shape-empty-but-strides-overflow": body({"x": {"dtype": "F32", "shape": [0, 2**62, 4],
                                                    "data_offsets": [0, 0]}}),
    "shape-one-huge-dim": body({"x": {"dtype": "F32", "shape": [10**4000],
                                      "data_offsets": [0, 4]}}, b"\0" * 4),
    "offsets-past-the-data": body({"x": {**F32_2, "data_offsets": [0, 10**4000]}}, b"\0" * 8),
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_body_raises_wire_format_error(raw: bytes) -> None:
    for buf in (raw, bytearray(raw)):
        with pytest.raises(WireFormatError) as info:
            decode(buf)
        assert info.value.status == 400
        assert info.value.error_type == "malformed_request"
        assert isinstance(info.value, MalformedRequestError)
        assert info.value.message.startswith("invalid safetensors body")


def test_huge_shapes_are_refused_with_a_short_message() -> None:
    # The message names the problem without printing (or computing) the giant numbers.
    for raw in (MALFORMED["shape-600-dims-of-4000-digits"], MALFORMED["shape-one-huge-dim"],
                MALFORMED["offsets-past-the-data"]):
        with pytest.raises(WireFormatError) as info:
            decode(raw)
        assert len(info.value.message) < 300
        assert "999999" not in info.value.message


@pytest.mark.parametrize("code", ["F128", "Q8", "f32", "C128", ""])
def test_unknown_dtype_code_raises_unsupported_dtype(code: str) -> None:
    raw = body({"x": {"dtype": code, "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    with pytest.raises(UnsupportedDTypeError) as info:
        decode(raw)
    assert info.value.status == 422
    assert repr(code) in info.value.message


def test_truncating_a_valid_body_anywhere_is_refused() -> None:
    raw = encode({"a": torch.arange(6.0), "b": torch.ones(3, dtype=torch.int16)},
                 {"k": "v"}).to_bytes()
    for cut in range(len(raw)):
        with pytest.raises(WireFormatError):
            decode(raw[:cut])


def test_header_padding_and_empty_body_are_accepted() -> None:
    # The safetensors spec allows trailing spaces in the header; no tensors is valid.
    out = decode(body(b'{"__metadata__": {"a": "b"}}      '))
    assert out.tensors == {} and out.metadata == {"a": "b"}
    assert decode(body({})).tensors == {}


def test_header_order_is_kept_and_offsets_may_be_in_any_order() -> None:
    # The reader tiles by offset, not by header order: a writer may list tensors
    # in any order as long as the spans cover the data exactly.
    raw = body({"second": {"dtype": "U8", "shape": [2], "data_offsets": [2, 4]},
                "first": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}},
               bytes([1, 2, 3, 4]))
    out = decode(raw)
    assert list(out.tensors) == ["second", "first"]
    assert out.tensors["first"].tolist() == [1, 2]
    assert out.tensors["second"].tolist() == [3, 4]


def test_unaligned_data_is_copied_not_misread() -> None:
    # A header whose length is not a multiple of 8 leaves F32 data unaligned in the
    # buffer; the reader must still produce the right values.
    header = json.dumps({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    header += b" " * ((3 - len(header)) % 8)  # 8 + len(header) is odd
    assert (8 + len(header)) % 4 != 0
    raw = struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.5, -2.5)
    assert decode(bytearray(raw)).tensors["x"].tolist() == [1.5, -2.5]


_VALID = encode({"a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
                 "b": torch.tensor([True, False]), "c": torch.tensor(7, dtype=torch.int16)},
                {"k": "v"}).to_bytes()


@settings(max_examples=300, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)),
                      min_size=1, max_size=4),
       cut=st.integers(0, len(_VALID)))
def test_mutated_bodies_never_escape_the_error_tree(edits: list[tuple[int, int]], cut: int) -> None:
    # Whatever bytes arrive, the reader answers with tensors or with its documented
    # errors (400/422), never with an exception the server would turn into a 500.
    raw = bytearray(_VALID)
    for pos, value in edits:
        raw[pos] = value
    for candidate in (bytes(raw), bytes(raw[:cut])):
        try:
            out = decode(candidate)
        except (WireFormatError, UnsupportedDTypeError):
            continue
        for t in out.tensors.values():
            assert isinstance(t, torch.Tensor)


_JUNK = st.none() | st.booleans() | st.floats() | st.text(max_size=4) | st.integers(-2**70, 2**70)
_ENTRY = st.fixed_dictionaries({
    "dtype": st.sampled_from([*WIRE_DTYPES, "F128", ""]) | _JUNK,
    "shape": st.lists(st.integers(-1, 4), max_size=3) | _JUNK,
    "data_offsets": st.lists(st.integers(-1, 40), min_size=2, max_size=2) | _JUNK,
})


@settings(max_examples=300, deadline=None)
@given(entries=st.dictionaries(st.sampled_from(["a", "b", "__metadata__"]), _ENTRY | _JUNK,
                               max_size=3),
       data=st.binary(max_size=40))
def test_near_valid_headers_never_escape_the_error_tree(entries: dict[str, Any],
                                                        data: bytes) -> None:
    raw = json.dumps(entries).encode()
    try:
        out = decode(struct.pack("<Q", len(raw)) + raw + data)
    except (WireFormatError, UnsupportedDTypeError):
        return
    for name, t in out.tensors.items():  # accepted: then it is exactly what the header says
        assert list(t.shape) == entries[name]["shape"]


def _saved(obj: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize(("make", "what"), [
    (lambda: _saved(torch.ones(2)), "torch.save file"),
    (lambda: _saved(torch.ones(2), _use_new_zipfile_serialization=False), "pickle"),
    *((lambda p=p: pickle.dumps([1, 2], protocol=p), "pickle") for p in (2, 3, 4, 5)),
])
def test_pickles_are_recognised_and_refused_with_the_conversion(make: Any, what: str) -> None:
    raw = make()
    assert what in (foreign_format(raw) or "")
    for buf in (raw, bytearray(raw)):
        with pytest.raises(UnsupportedMediaTypeError) as info:
            decode(buf)
        assert info.value.status == 415 and info.value.error_type == "unsupported_media_type"
        assert "pickle is refused for safety" in info.value.message
        assert CONVERSION in info.value.message
    assert error_class_for(415, "unsupported_media_type") is UnsupportedMediaTypeError
    assert error_class_for(415, None) is UnsupportedMediaTypeError


def test_what_is_not_a_pickle_stays_a_wire_format_error() -> None:
    for raw in (b"hello there", b"\x80", b"\x80\x07" + b"\0" * 20, b"PK\x05\x06" + b"\0" * 18):
        assert foreign_format(raw) is None
        with pytest.raises(WireFormatError):
            decode(raw)
    assert foreign_format(encode({"x": torch.ones(3)}).to_bytes()) is None

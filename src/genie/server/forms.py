"""The original server's ``/execute`` form: ``curl -F operation=relu -F tensor_file=@x.safetensors``.

The form is parsed from the body ``genie.server.bodies`` has already received, within
``--max-body-mb`` and the budget for bodies in flight: a form gets no other way in.
python-multipart (the parser Starlette uses) reads the body in small copied slices, and
the file's bytes are then moved to the front of the same buffer, so the tensors alias
the received body as with a plain safetensors body: no second copy of a large tensor.

Bounds on what a form may hold, past which it is refused (400): ``MAX_PARTS`` parts,
``MAX_FIELD_BYTES`` per non-file field, ``MAX_HEADER_BYTES`` of part headers.  Only the
part named ``tensor_file`` may carry a file, and it must be safetensors (a pickle or a
``torch.save`` file is refused by ``genie.wire.decode`` with 415).
"""

from __future__ import annotations

import json
import mmap
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from genie.errors import MalformedRequestError
from genie.wire import Charge, json_cost

__all__ = ["FILE_FIELD", "MAX_FIELD_BYTES", "MAX_HEADER_BYTES", "MAX_PARTS", "OP_FIELD",
           "ExecuteForm", "is_form", "parse_execute_form"]

FORM_MEDIA_TYPE = b"multipart/form-data"
#: The original form's field names: the op, and the file holding its tensor(s).
OP_FIELD = "operation"
FILE_FIELD = "tensor_file"
MAX_PARTS = 64
MAX_FIELD_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
#: The body is handed to the parser in copied slices of this size: bounded memory for
#: any body, and every slice's place in the body is known, so the file is located exactly.
SLICE_BYTES = 64 * 1024


@dataclass
class ExecuteForm:
    """What an ``/execute`` form asked for.

    ``tensors`` is the file's bytes, moved to the start of the received body (empty when
    the form has no file, as for a factory op); ``args`` are the other fields, each a
    JSON value when it parses as one (``dim=1``, ``keepdim=true``) and its text otherwise.
    """

    op: str | None
    args: dict[str, Any] = field(default_factory=dict)
    tensors: memoryview = field(default_factory=lambda: memoryview(bytearray()))


def is_form(content_type: str | None) -> bool:
    """Whether a request's Content-Type announces a multipart form."""
    return parse_options_header(content_type)[0] == FORM_MEDIA_TYPE


@dataclass
class _Part:
    header_bytes: int = 0
    name: str | None = None
    filename: str | None = None
    start: int | None = None  # the part's data in the body: [start, end)
    end: int | None = None
    value: bytearray = field(default_factory=bytearray)


class _Collector:
    """python-multipart callbacks that record each part's name and where its data lies."""

    def __init__(self, body: memoryview) -> None:
        self.body = body
        self.parts: list[_Part] = []
        self.offset = 0  # where the slice being parsed starts in the body
        self.slice = b""
        self.header_name = bytearray()
        self.header_value = bytearray()
        self.ended = False

    @property
    def part(self) -> _Part:
        return self.parts[-1]

    def on_part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise MalformedRequestError(f"the form has more than {MAX_PARTS} parts")
        self.parts.append(_Part())

    def _count_header(self, nbytes: int) -> None:
        self.part.header_bytes += nbytes
        if self.part.header_bytes > MAX_HEADER_BYTES:
            raise MalformedRequestError(
                f"a form part's headers are over {MAX_HEADER_BYTES} bytes")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        # Content-Disposition names the part; the others (a file's Content-Type) say
        # nothing Genie needs.
        if bytes(self.header_name).strip().lower() == b"content-disposition":
            kind, options = parse_options_header(bytes(self.header_value))
            if kind == b"form-data" and b"name" in options:
                self.part.name = options[b"name"].decode("utf-8", "replace")
                filename = options.get(b"filename")
                self.part.filename = None if filename is None else filename.decode("utf-8", "replace")
        self.header_name.clear()
        self.header_value.clear()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        if part.filename is None:  # a field: small, kept as bytes
            if len(part.value) + end - start > MAX_FIELD_BYTES:
                raise MalformedRequestError(
                    f"form field {part.name!r} is over {MAX_FIELD_BYTES} bytes; only "
                    f"{FILE_FIELD!r} may be large")
            part.value += data[start:end]
            return
        # A file: note where its bytes lie.  Bytes the parser held back as a possible
        # boundary come from its own buffer: they are the ones just before this slice.
        begin = self.offset + start if data is self.slice else self.offset - (end - start)
        if part.start is None:
            part.start = begin
        elif begin != part.end:
            raise MalformedRequestError("the form's file data could not be located")
        part.end = begin + (end - start)

    def on_end(self) -> None:
        self.ended = True

    def feed(self, parser: MultipartParser) -> None:
        for offset in range(0, len(self.body), SLICE_BYTES):
            self.offset = offset
            self.slice = bytes(self.body[offset:offset + SLICE_BYTES])
            parser.write(self.slice)
            if self.ended:
                return


def _value(raw: bytearray, name: str, charge: Charge | None) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequestError(f"form field {name!r} is not UTF-8 text") from None
    if charge is not None:
        charge(json_cost(text), f"parsing form field {name!r}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # a bare word such as mean: the text itself
        return text


def parse_execute_form(body: bytearray | mmap.mmap, content_type: str | None,
                       charge: Charge | None = None) -> ExecuteForm:
    """Read an ``/execute`` form out of ``body``; the file ends up at the start of ``body``.

    ``charge`` is told what parsing each field's JSON will cost first (``genie.wire``).

    Raises ``MalformedRequestError`` (400) for a form that is cut short, over the bounds,
    or holds a file in any part but ``tensor_file``.
    """
    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise MalformedRequestError("a multipart/form-data request needs a boundary in its "
                                    "Content-Type")
    view = memoryview(body).cast("B")
    collector = _Collector(view)
    callbacks: Any = {name: getattr(collector, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end",
        "on_part_data", "on_end")}
    try:
        collector.feed(MultipartParser(boundary, callbacks))
    except FormParserError as exc:
        raise MalformedRequestError(f"the multipart form is malformed: {exc}") from None
    if not collector.ended:
        raise MalformedRequestError("the multipart form ended before its closing boundary")
    form = ExecuteForm(op=None)
    file_part: _Part | None = None
    for part in collector.parts:
        if part.name is None:
            raise MalformedRequestError("a form part has no Content-Disposition name")
        if part.filename is not None:
            if part.name != FILE_FIELD or file_part is not None:
                raise MalformedRequestError(
                    f"only one file, in the field {FILE_FIELD!r}, is read (got a file in "
                    f"{part.name!r}); put several tensors in one safetensors file, each "
                    "under its parameter's name")
            file_part = part
        elif part.name == OP_FIELD:
            form.op = part.value.decode("utf-8", "replace").strip() or None
        elif part.name in form.args:
            raise MalformedRequestError(f"form field {part.name!r} is given twice")
        else:
            form.args[part.name] = _value(part.value, part.name, charge)
    if file_part is not None and file_part.start is not None and file_part.end is not None:
        size = file_part.end - file_part.start
        # A move within the buffer (memmove): aligned for the tensors, and no copy.
        view[:size] = view[file_part.start:file_part.end]
        form.tensors = view[:size]
    return form

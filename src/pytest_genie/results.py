"""The result record model and the session folder it is written to.

One session writes ``<results_dir>/genie_test_results_YYYYMMDD_HHMMSS/`` holding
``server_test_results_<ts>.json`` and/or ``client_test_results_<ts>.json`` in the
guide's schema (``{"test_info": {...}, "tests": [...]}``).  The folder is created
with ``mkdir`` (atomic: two sessions in the same second get ``_2``, ``_3``... and
never share or overwrite a folder), once the session knows it will run documented
tests (:meth:`ResultsSession.start`, at the end of collection, writes each kind's file
with ``"tests": []``), so a run without documented tests leaves nothing behind and a
run killed before its first test ends still leaves valid files.

Each file is rewritten after every recorded test through a temporary file and
``os.replace``: a reader, or a run killed by Ctrl-C or a crashing test, only ever
sees a complete JSON document holding every test recorded so far.  Files and folders
get the user's umask, like any file the user writes: a CI step that collects them as
another user can read them.

``test_info`` also carries the original scripts' ``server_info`` / ``client_info``
(hostname, IP addresses; the client's adds the server it tested), which the report reads.

A fleet (several ``--genie-server``, ``pytest_genie.fleet``) writes one file per kind and
server, ``<kind>_test_results_<ts>_<server slug>.json``, each in the same schema with its own
``test_info.server_url`` and ``measured``; records that talked to no server stay in the
unsuffixed file.  So every file holds figures measured from one host against one server, and
its ``test_info.measured`` says where each of its figures was measured.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import platform
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pytest_genie import host
from pytest_genie.checks import Key
from pytest_genie.fleet import server_slug
from pytest_genie.location import where_measured

__all__ = ["DISTRIBUTION", "FOLDER_PREFIX", "STATUSES", "STATUS_SYMBOLS", "TEST_TYPES", "ResultsSession",
           "TestRecord", "installed_version",
           "environment_info", "iso_utc", "json_safe", "result_file_name", "write_text_atomic"]

#: ``test_info.test_type`` per kind, as the guide spells it.
TEST_TYPES: dict[str, str] = {"server": "server_side", "client": "client_side"}
STATUSES = ("PASS", "FAIL", "SKIP", "ERROR")
#: How a status is shown, in the terminal summary and the Markdown report alike.
STATUS_SYMBOLS = {"PASS": "✅", "FAIL": "❌", "SKIP": "⏭", "ERROR": "💥"}
FOLDER_PREFIX = "genie_test_results_"


def result_file_name(kind: str, stamp: str, suffix: str | None = None) -> str:
    """``<kind>_test_results_<stamp>.json`` (``..._<suffix>.json`` for one server of a fleet);
    with ``stamp="*"``, the glob that finds them all."""
    return f"{kind}_test_results_{stamp}{'_' + suffix if suffix else ''}.json"
_MAX_DEPTH = 32


def iso_utc(epoch: float) -> str:
    """``2025-01-09T14:30:00.123456+00:00``: ISO 8601, UTC, with its offset."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()


def json_safe(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` accepts.

    Tests record whatever they measured (numpy scalars, torch dtypes, paths...):
    numbers stay numbers (as exact ``int``/``float``), NaN/inf become ``null`` (JSON has no NaN and ``jq``
    rejects it), containers are copied, and anything else becomes its ``str``.
    """
    if _depth > _MAX_DEPTH:
        return str(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)  # exact str: xdist's execnet refuses subclasses (torch.__version__)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [json_safe(v, _depth + 1) for v in items]
    return str(value)


@dataclass
class TestRecord:
    """One documented test's outcome: an entry of ``tests[]`` plus routing fields.

    ``kinds`` (which files it belongs in) and ``server_url`` (what the test talked
    to, if it asked for ``genie_server_url``) are not written into ``tests[]``.
    """

    __test__ = False  # not a pytest test class despite the name

    name: str
    status: str
    details: dict[str, Any]
    timing_ms: float
    timestamp: str
    kinds: list[str] = field(default_factory=list)
    server_url: str | None = None

    def entry(self) -> dict[str, Any]:
        """The ``tests[]`` entry in the guide's schema."""
        return {"name": self.name, "status": self.status, "details": self.details,
                "timing_ms": self.timing_ms, "timestamp": self.timestamp}

    def to_wire(self) -> dict[str, Any]:
        """Plain JSON types only: travels on a report from an xdist worker."""
        return {**self.entry(), "kinds": list(self.kinds), "server_url": self.server_url}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> TestRecord:
        return cls(name=str(data["name"]), status=str(data["status"]),
                   details=dict(data.get("details") or {}), timing_ms=float(data["timing_ms"]),
                   timestamp=str(data["timestamp"]), kinds=[str(k) for k in data.get("kinds", [])],
                   server_url=data.get("server_url"))


#: The distribution that installs ``genie`` and ``pytest_genie`` (its version is theirs).
DISTRIBUTION = "pytest-genie"


def installed_version() -> str | None:
    """The installed version of Genie, from package metadata (so nothing imports torch)."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def environment_info() -> dict[str, Any]:
    """Versions, platform and the GPU of *this* machine (for server tests run on
    the GPU node, that is the server).  torch is imported here, not at plugin
    import, so ``pytest --help`` stays fast."""
    info: dict[str, Any] = {Key.PYTHON_VERSION: platform.python_version(), Key.TORCH_VERSION: None,
                            Key.GENIE_VERSION: installed_version(), "platform": platform.platform(),
                            "gpu": {Key.CUDA_AVAILABLE: False, Key.GPU_COUNT: 0, Key.GPU_NAME: None}}
    try:
        import torch
    except ImportError:
        return info
    info[Key.TORCH_VERSION] = torch.__version__
    try:
        available = bool(torch.cuda.is_available())
        count = int(torch.cuda.device_count()) if available else 0
        info["gpu"] = {Key.CUDA_AVAILABLE: available, Key.GPU_COUNT: count,
                       Key.GPU_NAME: torch.cuda.get_device_name(0) if count else None}
    except Exception as exc:  # a broken driver must not lose the results
        info["gpu"]["error"] = f"{type(exc).__name__}: {exc}"
    return info


def _write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Temp file + fsync + rename in the same folder: a reader (or a crash) never sees
    half a file.

    The temporary file is opened with mode 0666, which the kernel narrows by the umask
    (``mkstemp`` would make it 0600 whatever the umask: unreadable to a CI artifact step
    running as another user); ``O_EXCL`` and a random name keep it private to this call.
    """
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _make_folder(results_dir: Path, stamp: str) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    base = results_dir / f"{FOLDER_PREFIX}{stamp}"
    for n in range(1, 10_000):
        candidate = base if n == 1 else base.with_name(f"{base.name}_{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free session folder name under {results_dir} for {base.name}")


@dataclass
class ResultsSession:
    """The records of one pytest session and the folder they are kept in.

    ``extend_info`` is called once per file with its fresh ``test_info`` dict (the
    plugin routes it to the ``pytest_genie_test_info`` hook).  With ``fleet``, a record
    goes to the file of its kind and its server (a *slot*: ``(kind, server_url)``; a record
    that talked to no server has ``(kind, None)``, the unsuffixed file).
    """

    results_dir: Path
    started: float
    server_url: str | None = None
    extend_info: Callable[[dict[str, Any]], None] | None = None
    fleet: bool = False
    records: list[TestRecord] = field(default_factory=list)
    folder: Path | None = None
    #: Each kind's unsuffixed file (the only one outside a fleet).
    files: dict[str, Path] = field(default_factory=dict)
    #: A fleet's per-server files, by ``(kind, server_url)``.
    server_files: dict[tuple[str, str], Path] = field(default_factory=dict)
    _infos: dict[tuple[str, str | None], dict[str, Any]] = field(default_factory=dict)
    _env: dict[str, Any] | None = None

    @property
    def stamp(self) -> str:
        return datetime.fromtimestamp(self.started, tz=timezone.utc).strftime("%Y%m%d_%H%M%S")

    def ensure_folder(self) -> Path:
        if self.folder is None:
            self.folder = _make_folder(self.results_dir, self.stamp)
        return self.folder

    def start(self, slots: Iterable[str | tuple[str, str | None]]) -> None:
        """Write each kind's (or slot's) file with ``"tests": []`` now, before any test has run."""
        for slot in slots:
            kind, server = (slot, None) if isinstance(slot, str) else slot
            if kind in TEST_TYPES and self.path_of(kind, server) is None:
                self.write(kind, server)

    def slot_of(self, record: TestRecord) -> str | None:
        """The server whose file ``record`` goes to: its own in a fleet, else None (one file)."""
        return record.server_url if self.fleet else None

    def add(self, record: TestRecord) -> None:
        """Keep ``record`` and rewrite the file(s) of its kind(s) at once."""
        self.records.append(record)
        if self.server_url is None and record.server_url and not self.fleet:
            self.server_url = record.server_url
        for kind in record.kinds:
            if kind in TEST_TYPES:
                self.write(kind, self.slot_of(record))

    def path_of(self, kind: str, server: str | None = None) -> Path | None:
        """The file written for ``kind`` (and a fleet's ``server``), if any yet."""
        return self.files.get(kind) if server is None else self.server_files.get((kind, server))

    def slots(self) -> list[tuple[str, str | None]]:
        """Every ``(kind, server)`` with records or a file, kinds in order, then servers in order."""
        found = {(kind, self.slot_of(r)) for r in self.records for kind in r.kinds if kind in TEST_TYPES}
        found |= {(kind, None) for kind in self.files} | set(self.server_files)
        order = list(TEST_TYPES)
        return sorted(found, key=lambda s: (order.index(s[0]), s[1] is not None, s[1] or ""))

    def _test_info(self, kind: str, server: str | None = None) -> dict[str, Any]:
        slot = (kind, server)
        info = self._infos.get(slot)
        if info is None:
            if self._env is None:
                self._env = environment_info()
            name = host.hostname()
            info = {"hostname": name, "timestamp": iso_utc(self.started),
                    "test_type": TEST_TYPES[kind], Key.SERVER_URL: server or self.server_url,
                    **json_safe(self._env),
                    f"{kind}_info": {"hostname": name, "ip_addresses": host.ip_addresses()}}
            if self.extend_info is not None:
                self.extend_info(info)
            info = json_safe(info)
            self._infos[slot] = info
        if info.get(Key.SERVER_URL) is None:
            info[Key.SERVER_URL] = server or self.server_url
        client_info = info.get("client_info")
        if kind == "client" and info[Key.SERVER_URL] and isinstance(client_info, dict):
            client_info["server_ip"] = urlsplit(info[Key.SERVER_URL]).hostname  # as the original did
        measured = info.get(Key.MEASURED)
        if not isinstance(measured, dict) or measured.get(Key.SERVER_URL) != info[Key.SERVER_URL]:
            info[Key.MEASURED] = where_measured(info[Key.SERVER_URL], info.get("hostname"))
        return info

    def write(self, kind: str, server: str | None = None) -> Path:
        """(Re)write ``<kind>_test_results_<ts>.json`` with every record of ``kind`` (in a fleet:
        ``..._<slug>.json`` with those of ``server``, or the unsuffixed one with ``None``)."""
        folder = self.ensure_folder()
        suffix = server_slug(server) if server is not None else None
        path = self.path_of(kind, server) or folder / result_file_name(kind, self.stamp, suffix)
        payload = {"test_info": self._test_info(kind, server),
                   "tests": [r.entry() for r in self.by_kind(kind, server)]}
        # Records are made JSON-safe where the plugin builds them, but one may also come from
        # another plugin's report attribute; strict JSON (no NaN) is what jq and the report read.
        _write_json_atomic(path, json_safe(payload))
        if server is None:
            self.files[kind] = path
        else:
            self.server_files[(kind, server)] = path
        return path

    def by_kind(self, kind: str, server: str | None = None) -> list[TestRecord]:
        """The records of ``kind``; in a fleet, of the one slot ``(kind, server)``."""
        return [r for r in self.records if kind in r.kinds and (not self.fleet or self.slot_of(r) == server)]

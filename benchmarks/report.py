"""The targets of ``benchmarks/transport.py`` and how its results are shown: the
terminal tables, and the same as Markdown for docs/performance.md."""

from __future__ import annotations

from typing import Any

from procs import MB

#: The sequential paths, in table order, with the names the tables show.
LABELS = {"execute": "execute", "async": "async execute", "graph": "graph", "echo": "echo",
          "floor": "HTTP floor", "raw_tight": "raw (tight)", "raw_naive": "raw (naive)",
          "rpc": "torch.rpc"}
BASELINE = "raw_tight"
#: The issue's targets: /execute medians at most this many times the tight raw socket.
RATIO_TARGETS = {1000: 1.5, 4096: 1.3, 8192: 1.25}
SMALL_MS_TARGET = 0.1  # n=10 /execute, ms
RPS_TARGET = (4, 10_000)  # small /execute requests/s at 4 client processes
P99_TARGET = (64, 20.0)  # small /execute p99 (ms) at 64 client processes
RSS_PAYLOADS = 2  # server peak RSS at the largest size <= idle + this many payloads
CONCURRENCY_LABELS = {"floor": "HTTP floor", "execute": "execute", "async": "AsyncClient",
                      "rpc": "torch.rpc"}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    sizes, rows, big = report["sizes"], report.get("concurrency", []), report.get("big")
    by_n = {s["n"]: s for s in sizes}
    out: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str) -> None:
        out.append({"target": name, "met": bool(ok), "detail": detail})

    if 10 in by_n:
        ms = by_n[10]["paths"]["execute"]["median_ms"]
        add(f"n=10 execute <= {SMALL_MS_TARGET} ms", ms <= SMALL_MS_TARGET, f"{ms:.3f} ms")
    for n, limit in RATIO_TARGETS.items():
        if n in by_n:
            cell = by_n[n]["paths"]["execute"]
            add(f"n={n} execute <= {limit}x raw (tight)", cell["ratio_to_tight"] <= limit,
                f"{cell['ratio_to_tight']:.2f}x: {cell['median_ms']:.1f} ms vs "
                f"{by_n[n]['paths'][BASELINE]['median_ms']:.1f} ms")
    small = {r["clients"]: r["paths"]["execute"] for r in rows if r["payload"] == "small"}
    clients, rps = RPS_TARGET
    if clients in small:
        got = small[clients]["requests_per_s"]
        add(f"small execute >= {rps} requests/s at {clients} clients", got >= rps, f"{got:.0f}/s")
    clients, p99 = P99_TARGET
    if clients in small:
        got = small[clients]["p99_ms"]
        add(f"small execute p99 <= {p99:g} ms at {clients} clients",
            got is not None and got <= p99, f"{_ms(got)} ms")
    mem = next((s["memory"] for s in reversed(sizes) if s["memory"]), None)
    if mem and mem["request_mb"] >= 64:  # below that, the allocator's noise dominates
        srv = mem["server"]
        limit = srv["idle_mb"] + RSS_PAYLOADS * mem["request_mb"]
        add(f"n={mem['n']} server peak RSS <= idle + {RSS_PAYLOADS} x payload",
            srv["peak_mb"] <= limit, f"peak {srv['peak_mb']} MB, limit {limit:.0f} MB")
    if big is not None:
        add("> 2 GiB round trip exact", big["exact"],
            f"{big['bytes'] / 2**30:.2f} GiB in {big['seconds']:.1f} s")
    bad = [f"{k}@{s['n']}" for s in sizes for k, c in s["paths"].items() if not c["exact"]]
    bad += [f"{k}@{r['payload']}x{r['clients']}" for r in rows for k, c in r["paths"].items()
            if not c["exact"] or c["errors"]]
    add("every path returned the exact result", not bad, ", ".join(bad) or "all exact")
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def size_cell(cell: dict[str, Any] | None) -> str:
    return f"{_ms(cell['median_ms'])} ({cell['ratio_to_tight']:.2f}x)" if cell else "-"


def concurrency_cell(cell: dict[str, Any] | None) -> str:
    if not cell:
        return "-"
    return (f"{cell['requests_per_s']:.0f}/s {_ms(cell['p50_ms'])}/{_ms(cell['p99_ms'])} "
            f"{cell['server_cpu_pct']:.0f}%")


def size_paths(report: dict[str, Any]) -> list[str]:
    return [p for p in LABELS if any(p in s["paths"] for s in report["sizes"])]


def concurrency_paths(report: dict[str, Any]) -> list[str]:
    rows = report.get("concurrency", [])
    return [p for p in CONCURRENCY_LABELS if any(p in r["paths"] for r in rows)]


def _text_table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return [line(head), "-" * len(line(head)), *map(line, rows)]


def _size_rows(report: dict[str, Any], paths: list[str]) -> list[list[str]]:
    return [[str(s["n"]), f"{s['bytes'] / MB:.2f}", *(size_cell(s["paths"].get(p)) for p in paths)]
            for s in report["sizes"]]


def _concurrency_rows(report: dict[str, Any], paths: list[str]) -> list[list[str]]:
    return [[r["payload"], str(r["clients"]), *(concurrency_cell(r["paths"].get(p)) for p in paths)]
            for r in report.get("concurrency", [])]


def _fault_rows(report: dict[str, Any], paths: list[str]) -> list[list[str]]:
    return [[str(s["n"]), *(f"{c['server_minflt']:.0f} / {c['client_minflt']:.0f}"
                            if (c := s["paths"].get(p)) else "-" for p in paths)]
            for s in report["sizes"]]


def print_report(report: dict[str, Any]) -> None:
    paths = size_paths(report)
    for line in _text_table(["n", "MB", *(LABELS[p] for p in paths)], _size_rows(report, paths)):
        print(line)
    print("medians in ms, (ratio to raw (tight), same run)\n")
    for line in _text_table(["n", *(LABELS[p] for p in paths)], _fault_rows(report, paths)):
        print(line)
    print("minor page faults per call, server / client\n")
    cpaths = concurrency_paths(report)
    if cpaths:
        for line in _text_table(["payload", "clients", *(CONCURRENCY_LABELS[p] for p in cpaths)],
                                _concurrency_rows(report, cpaths)):
            print(line)
        print("requests/s, p50/p99 ms, server CPU (100% = one core), per fixed window\n")
    for s in report["sizes"]:
        if s["memory"]:
            m = s["memory"]
            print(f"RSS at n={m['n']} ({m['request_mb']} MB request): "
                  f"server idle {m['server']['idle_mb']} MB -> peak {m['server']['peak_mb']} MB; "
                  f"client idle {m['client']['idle_mb']} MB -> peak {m['client']['peak_mb']} MB "
                  f"({m['server']['method']})")
    if report.get("big"):
        b = report["big"]
        print(f"big: {b['bytes'] / 2**30:.2f} GiB /execute relu in {b['seconds']:.1f} s, "
              f"exact={b['exact']}")
    for t in report["targets"]:
        print(f"[{'met' if t['met'] else 'MISSED':>6}] {t['target']}: {t['detail']}")
    env = report["environment"]
    print(f"load average start {env['load_avg_start']}, end {env['load_avg_end']}")


def _md_table(head: list[str], rows: list[list[str]], right_from: int) -> list[str]:
    align = ["---"] * right_from + ["---:"] * (len(head) - right_from)
    return ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def markdown(report: dict[str, Any]) -> str:
    """The tables and targets as Markdown, for docs/performance.md."""
    paths = size_paths(report)
    lines = _md_table(["n", "MB", *(LABELS[p] for p in paths)], _size_rows(report, paths), 0)
    lines += ["", "Medians in ms (ratio to raw (tight), same run).", ""]
    lines += _md_table(["n", *(LABELS[p] for p in paths)], _fault_rows(report, paths), 0)
    lines += ["", "Minor page faults per call, server / client.", ""]
    cpaths = concurrency_paths(report)
    if cpaths:
        lines += _md_table(["payload", "clients", *(CONCURRENCY_LABELS[p] for p in cpaths)],
                           _concurrency_rows(report, cpaths), 2)
        lines += ["", "Requests/s, p50/p99 ms, server CPU (100 % = one core), "
                      f"{report['concurrency'][0]['window_s']:g} s window each.", ""]
    lines += [f"- {'met' if t['met'] else '**missed**'}: {t['target']} ({t['detail']})"
              for t in report["targets"]]
    env = report["environment"]
    lines += ["", f"Load average at the start {env['load_avg_start']}, at the end "
                  f"{env['load_avg_end']}."]
    return "\n".join(lines) + "\n"

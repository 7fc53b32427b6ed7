"""The documented checks: their names, their kinds, and the keys of the details they record.

The testing guide names 13 checks (:data:`GUIDE_CHECKS`), and one more from its week-2 list
(``llm_decode_colocation``: "Compare KV cache transfer vs co-location"); Genie adds
``network_throughput`` (the network baseline that tensor transfers are compared with) and
``concurrency_sweep`` (:data:`CHECKS` holds them all).  Each is one test function ``test_<name>``
marked ``server`` or ``client`` (in ``tests/server`` and ``tests/client``), recorded under
``<name>``, and its ``details`` are read back by the report (``pytest_genie.report``).  Both
sides spell every name and key through this module, so a check and its reader cannot drift
apart: a misspelt key is an ``AttributeError`` and a mypy error, not a figure the report
quietly shows as "not measured".

Why the keys are one flat vocabulary (:class:`Key`) rather than a class per check: a key means the
same thing in every check that records it (``round_trip_ms`` is a round trip the client timed, in
four checks and in every sweep row; ``device`` is the server's compute device in four), the report
reads some keys across checks (both transfer checks alike, the server's GPU facts from three
sources) and the Markdown formats a value by its key.  One flat class spells each key once.
Checks, in turn, are small frozen values (:class:`Check`: a name and a kind), so the report takes
a check's records from the right side's files, and a unit test holds ``tests/`` to :data:`CHECKS`.

Keys are plain ``str`` constants, not an ``Enum``: a details dict travels from xdist workers,
whose serializer refuses ``str`` subclasses, and must land in the JSON as exactly its text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "CHECKS",
    "CONCURRENCY_SWEEP",
    "ENVIRONMENT_SETUP",
    "ERROR_HANDLING",
    "GPU_DETECTION",
    "GUIDE_CHECKS",
    "HTTP_TENSOR_TRANSFER",
    "KINDS",
    "LARGE_TENSOR_HANDLING",
    "LLM_DECODE_COLOCATION",
    "MULTI_OPERATION_CHAIN",
    "NETWORK_CONNECTIVITY",
    "NETWORK_THROUGHPUT",
    "PERFORMANCE_COMPARISON",
    "REMOTE_LAZYTENSOR_EXECUTION",
    "SERVER_CONNECTIVITY",
    "SERVER_OPERATIONS",
    "SERVER_STARTUP",
    "SERVER_STATISTICS",
    "Check",
    "Key",
    "Kind",
]

#: Which side a check runs on: its pytest marker, and the result file it is written to.
Kind = Literal["server", "client"]
KINDS: tuple[Kind, ...] = ("server", "client")


@dataclass(frozen=True)
class Check:
    """One documented check: recorded under ``name``, marked and filed by ``kind``.

    ``figures`` are its headline details: the report's "key details" cell, and the junitxml
    properties / pytest-html column the plugin writes for it.
    """

    name: str
    kind: Kind
    figures: tuple[str, ...] = ()

    @property
    def test_name(self) -> str:
        """The test function that runs it; the plugin records it under ``name``."""
        return f"test_{self.name}"


class Key:
    """Every key of a record's ``details``, grouped by the check that records it first.

    A namespace, never instantiated.  The comment after a key names the other checks that
    record it, with the same meaning.  A result file's ``test_info`` states some of the same
    facts under the same keys (the versions; ``gpu``: cuda_available, gpu_count, gpu_name).
    """

    # ---- why a record did not pass: the plugin adds these to any record
    FAILURE: Final = "failure"
    ERROR: Final = "error"
    SKIP_REASON: Final = "skip_reason"
    #: The timing is a bound, not a measurement (a worker died mid-test).
    TIMING_NOTE: Final = "timing_note"
    #: Set by the report's reader for details that are not a JSON object (the guide wrote text).
    TEXT: Final = "text"
    #: The client retried, reconnected or timed out during the check: its figures are suspect.
    #: A dict of the counters that moved (RETRIES, RECONNECTS, TIMEOUTS, TRANSPORT_ERRORS).
    DISTURBED: Final = "disturbed"
    RETRIES: Final = "retries"
    RECONNECTS: Final = "reconnects"
    TIMEOUTS: Final = "timeouts"
    TRANSPORT_ERRORS: Final = "transport_errors"
    #: The --genie-level the check ran at (quick, standard, long).
    LEVEL: Final = "level"

    # ---- a measured figure's spread (``pytest_genie.stats.Spread``): any timed figure ``F`` is
    # recorded as its median under ``F`` and as ``SPREAD: {F: {MEDIAN, Q1, ...}}`` beside it
    SPREAD: Final = "spread"
    MEDIAN: Final = "median"
    Q1: Final = "q1"
    Q3: Final = "q3"
    MIN: Final = "min"
    MAX: Final = "max"
    COUNT: Final = "count"
    #: Whether the stabilisation loop settled (False: a cap stopped it).
    STABLE: Final = "stable"
    WINDOWS: Final = "windows"

    # ---- environment_setup
    PYTHON_VERSION: Final = "python_version"
    TORCH_VERSION: Final = "torch_version"
    GENIE_VERSION: Final = "genie_version"  # server_connectivity (the server's)
    PACKAGES: Final = "packages"

    # ---- server_startup
    PID: Final = "pid"
    PORT: Final = "port"  # network_connectivity
    STARTUP_MS: Final = "startup_ms"
    SHUTDOWN_MS: Final = "shutdown_ms"
    HEALTH_STATUS: Final = "health_status"
    EXIT_CODE: Final = "exit_code"

    # ---- gpu_detection: the server's device (server_connectivity reports the same facts)
    DEVICE: Final = "device"  # server_startup, server_connectivity, remote_lazytensor_execution
    CUDA_AVAILABLE: Final = "cuda_available"  # server_connectivity
    GPU_COUNT: Final = "gpu_count"
    GPU_NAME: Final = "gpu_name"  # server_connectivity
    GPU_MEMORY_TOTAL_BYTES: Final = "gpu_memory_total_bytes"
    GPU_TIME_MS: Final = "gpu_time_ms"
    LOCAL_CUDA_AVAILABLE: Final = "local_cuda_available"

    # ---- server_operations
    CASES: Final = "cases"  # error_handling
    OPS_CHECKED: Final = "ops_checked"
    MEDIAN_ROUND_TRIP_MS: Final = "median_round_trip_ms"
    # each of its cases
    OP: Final = "op"  # performance_comparison
    DTYPE: Final = "dtype"
    SHAPE: Final = "shape"  # remote_lazytensor_execution
    ROUND_TRIP_MS: Final = "round_trip_ms"  # the transfers, remote_lazytensor_execution, the chain
    EXACT: Final = "exact"

    # ---- server_statistics
    REQUESTS_BEFORE: Final = "requests_before"
    REQUESTS_AFTER: Final = "requests_after"
    REQUESTS_MADE: Final = "requests_made"  # remote_lazytensor_execution, multi_operation_chain
    FAILURES_BY_TYPE: Final = "failures_by_type"
    ERROR_RATE: Final = "error_rate"

    # ---- network_connectivity
    HOST: Final = "host"
    ATTEMPTS: Final = "attempts"  # network_throughput (timed transfers each way)
    CONNECT_MS_MEDIAN: Final = "connect_ms_median"
    CONNECT_MS_MIN: Final = "connect_ms_min"

    # ---- network_throughput: /probe, no tensor work (MiB = 2**20 bytes)
    #: The two probe sizes [S, 3 x S] in bytes; UPLOAD_MS / DOWNLOAD_MS: their best times.
    PROBE_SIZES: Final = "probe_sizes"
    UPLOAD_MS: Final = "upload_ms"
    DOWNLOAD_MS: Final = "download_ms"
    #: The streaming rate each way: the slope of time over size between the two probes.
    UPLOAD_MIB_PER_S: Final = "upload_mib_per_s"
    DOWNLOAD_MIB_PER_S: Final = "download_mib_per_s"
    #: What a request costs whatever its size (round trip, the server's reply): the intercept.
    UPLOAD_FIXED_MS: Final = "upload_fixed_ms"
    DOWNLOAD_FIXED_MS: Final = "download_fixed_ms"
    #: The client budget the later client checks get from this measurement (``Timeout``).
    TIMEOUT_BASE_S: Final = "timeout_base_s"
    TIMEOUT_MIN_RATE_MIB_S: Final = "timeout_min_rate_mib_s"

    # ---- server_connectivity
    SERVER_URL: Final = "server_url"
    RESPONSE_MS: Final = "response_ms"
    PROTOCOL_VERSION: Final = "protocol_version"

    # ---- http_tensor_transfer and large_tensor_handling (the report reads both alike)
    HTTP_CODE: Final = "http_code"
    BYTES: Final = "bytes"  # each sweep row of performance_comparison
    #: Bytes both ways over the round trip's time, in MiB (2**20) per second.
    MIB_PER_S: Final = "mib_per_s"
    #: The key earlier versions recorded ``MIB_PER_S`` under (MiB/s all along); the report still reads it.
    LEGACY_MB_PER_S: Final = "mb_per_s"
    BIT_EXACT: Final = "bit_exact"
    SIZE_MB: Final = "size_mb"  # large_tensor_handling only

    # ---- remote_lazytensor_execution
    VIA: Final = "via"
    #: The first call of the check (LazyTensor set-up included), apart from the steady state.
    FIRST_CALL_MS: Final = "first_call_ms"
    MAX_ABS_ERROR: Final = "max_abs_error"  # multi_operation_chain

    # ---- performance_comparison (N, BYTES, the three timings: also each row of its sweep)
    N: Final = "n"
    LOCAL_CPU_MS: Final = "local_cpu_ms"
    SERVER_COMPUTE_MS: Final = "server_compute_ms"
    REMOTE_MS: Final = "remote_ms"
    NETWORK_OVERHEAD_MS: Final = "network_overhead_ms"
    NETWORK_OVERHEAD_PCT: Final = "network_overhead_pct"
    SLOWDOWN_VS_LOCAL_PCT: Final = "slowdown_vs_local_pct"
    SWEEP: Final = "sweep"
    BREAK_EVEN_N: Final = "break_even_n"
    BREAK_EVEN_BYTES: Final = "break_even_bytes"
    #: Per sweep row: remote_faster, local_faster or no_clear_difference (interquartile ranges).
    VERDICT: Final = "verdict"
    # the main case's request: BYTES_SENT and BYTES_RECEIVED (below), and all of the server's
    # Server-Timing phases
    SERVER_WORK_MS: Final = "server_work_ms"

    # ---- multi_operation_chain
    OPS: Final = "ops"

    # ---- error_handling (and CASES)
    SERVER_HEALTHY_AFTER: Final = "server_healthy_after"
    # each of its cases: what the server answered, and what the guide documents
    CASE_STATUS: Final = "status"
    CASE_TYPE: Final = "type"
    EXPECTED_STATUS: Final = "expected_status"
    EXPECTED_TYPE: Final = "expected_type"
    CASE_MESSAGE: Final = "message"

    # ---- concurrency_sweep: LEVELS holds one row per payload and concurrency
    LEVELS: Final = "levels"
    PAYLOAD: Final = "payload"  # "small" or "medium"
    CONCURRENCY: Final = "concurrency"
    WINDOW_S: Final = "window_s"
    REQUESTS: Final = "requests"
    ERRORS: Final = "errors"
    THROUGHPUT_RPS: Final = "throughput_rps"
    P50_MS: Final = "p50_ms"
    P95_MS: Final = "p95_ms"
    PEAK_THROUGHPUT_RPS: Final = "peak_throughput_rps"
    P50_MS_AT_1: Final = "p50_ms_at_1"
    #: The clients ran in the server's own process (the embedded server): one interpreter lock.
    SAME_PROCESS: Final = "same_process"

    # ---- llm_decode_colocation: a small GPT-2-style decoder, greedy, two ways
    MODEL: Final = "model"  # its configuration: layers, d_model, heads, vocab, parameters
    PROMPT_TOKENS: Final = "prompt_tokens"
    STEPS: Final = "steps"  # decode steps after the prompt
    TOKENS_MATCH_EAGER: Final = "tokens_match_eager"
    KV_CACHE_BYTES: Final = "kv_cache_bytes"  # the cache after the last step
    #: The two ways, each a dict of the keys below: the cache kept on the server as handles
    #: (last step's released in each step's request), and the cache sent and fetched each step.
    KV_KEPT: Final = "kv_kept"
    KV_SHIPPED: Final = "kv_shipped"
    # each way (and REQUESTS_MADE: the client's requests over the decode steps)
    REQUESTS_PER_STEP: Final = "requests_per_step"
    SERVER_REQUESTS: Final = "server_requests"  # the same requests, as the server counted them
    BYTES_SENT: Final = "bytes_sent"  # also each step row, and performance_comparison's request
    BYTES_RECEIVED: Final = "bytes_received"  # also each step row, and performance_comparison's
    TOTAL_MS: Final = "total_ms"
    STEP_MS_MEDIAN: Final = "step_ms_median"
    PREFILL: Final = "prefill"  # the prompt's request: BYTES_SENT, BYTES_RECEIVED, ROUND_TRIP_MS
    PER_STEP: Final = "per_step"  # rows: STEP, BYTES_SENT, BYTES_RECEIVED, ROUND_TRIP_MS
    STEP: Final = "step"
    # what co-location saves: shipped over kept (bytes both ways; the median step's time)
    BYTES_RATIO: Final = "bytes_ratio"
    BYTES_SAVED_PCT: Final = "bytes_saved_pct"
    TIME_RATIO: Final = "time_ratio"

    # ---- a result file's test_info: where its figures were measured (``pytest_genie.location``)
    MEASURED: Final = "measured"

ENVIRONMENT_SETUP: Final = Check("environment_setup", "server",
                                 (Key.PYTHON_VERSION, Key.TORCH_VERSION, Key.GENIE_VERSION))
SERVER_STARTUP: Final = Check("server_startup", "server",
                              (Key.STARTUP_MS, Key.SHUTDOWN_MS, Key.HEALTH_STATUS, Key.PORT))
GPU_DETECTION: Final = Check("gpu_detection", "server",
                             (Key.DEVICE, Key.GPU_NAME, Key.GPU_COUNT, Key.GPU_TIME_MS))
SERVER_OPERATIONS: Final = Check("server_operations", "server", (Key.OPS_CHECKED, Key.MEDIAN_ROUND_TRIP_MS))
SERVER_STATISTICS: Final = Check("server_statistics", "server", (Key.REQUESTS_MADE, Key.ERROR_RATE))
NETWORK_CONNECTIVITY: Final = Check("network_connectivity", "client",
                                    (Key.HOST, Key.PORT, Key.CONNECT_MS_MEDIAN))
#: Not in the guide: bytes up and down through ``/probe`` with no tensor work, the baseline the
#: report compares tensor throughput with (and from which the client checks size their timeouts).
NETWORK_THROUGHPUT: Final = Check("network_throughput", "client",
                                  (Key.UPLOAD_MIB_PER_S, Key.DOWNLOAD_MIB_PER_S, Key.UPLOAD_FIXED_MS,
                                   Key.DOWNLOAD_FIXED_MS))
SERVER_CONNECTIVITY: Final = Check("server_connectivity", "client",
                                   (Key.DEVICE, Key.CUDA_AVAILABLE, Key.RESPONSE_MS, Key.PROTOCOL_VERSION))
HTTP_TENSOR_TRANSFER: Final = Check("http_tensor_transfer", "client",
                                    (Key.HTTP_CODE, Key.BYTES, Key.ROUND_TRIP_MS, Key.MIB_PER_S,
                                     Key.BIT_EXACT))
REMOTE_LAZYTENSOR_EXECUTION: Final = Check("remote_lazytensor_execution", "client",
                                           (Key.VIA, Key.FIRST_CALL_MS, Key.ROUND_TRIP_MS,
                                            Key.REQUESTS_MADE, Key.MAX_ABS_ERROR))
PERFORMANCE_COMPARISON: Final = Check("performance_comparison", "client",
                                      (Key.LOCAL_CPU_MS, Key.SERVER_COMPUTE_MS, Key.REMOTE_MS,
                                       Key.BREAK_EVEN_N))
MULTI_OPERATION_CHAIN: Final = Check("multi_operation_chain", "client",
                                     (Key.REQUESTS_MADE, Key.ROUND_TRIP_MS, Key.MAX_ABS_ERROR))
ERROR_HANDLING: Final = Check("error_handling", "client", (Key.SERVER_HEALTHY_AFTER,))
LARGE_TENSOR_HANDLING: Final = Check("large_tensor_handling", "client",
                                     (Key.SIZE_MB, Key.ROUND_TRIP_MS, Key.MIB_PER_S, Key.BIT_EXACT))
#: The guide's week-2 "LLM decode co-location": a KV cache kept on the server vs shipped.
LLM_DECODE_COLOCATION: Final = Check("llm_decode_colocation", "client",
                                     (Key.STEPS, Key.BYTES_RATIO, Key.TIME_RATIO, Key.TOKENS_MATCH_EAGER))
#: Beyond the guide: requests at 1, 2, 4, 8 concurrent clients (throughput and latency per level).
CONCURRENCY_SWEEP: Final = Check("concurrency_sweep", "client",
                                 (Key.PEAK_THROUGHPUT_RPS, Key.P50_MS_AT_1))

#: The guide's checks in the guide's order: server side first, then client side.
GUIDE_CHECKS: Final[tuple[Check, ...]] = (
    ENVIRONMENT_SETUP, SERVER_STARTUP, GPU_DETECTION, SERVER_OPERATIONS, SERVER_STATISTICS,
    NETWORK_CONNECTIVITY, SERVER_CONNECTIVITY, HTTP_TENSOR_TRANSFER, REMOTE_LAZYTENSOR_EXECUTION,
    PERFORMANCE_COMPARISON, MULTI_OPERATION_CHAIN, ERROR_HANDLING, LARGE_TENSOR_HANDLING,
)
#: Every check the suite runs, in the order it runs them: the guide's, with the network baseline
#: right after the guide's connectivity check, the concurrency sweep (last in the client checks'
#: module), then the guide's week-2 decode check (in its own module).
CHECKS: Final[tuple[Check, ...]] = (
    ENVIRONMENT_SETUP, SERVER_STARTUP, GPU_DETECTION, SERVER_OPERATIONS, SERVER_STATISTICS,
    NETWORK_CONNECTIVITY, NETWORK_THROUGHPUT, SERVER_CONNECTIVITY, HTTP_TENSOR_TRANSFER,
    REMOTE_LAZYTENSOR_EXECUTION, PERFORMANCE_COMPARISON, MULTI_OPERATION_CHAIN, ERROR_HANDLING,
    LARGE_TENSOR_HANDLING, CONCURRENCY_SWEEP, LLM_DECODE_COLOCATION,
)

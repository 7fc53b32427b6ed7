"""The documented checks (``checks.py``): the guide's 13 names, Genie's network baseline, the
guide's week-2 decode check and the concurrency sweep, and exactly one test function
``test_<name>`` for each in ``tests/server`` or ``tests/client``, under its marker.

The test functions are read with ``ast``, not collected: collecting them would import torch
and genie, and what is asserted here is the source's shape.
"""

from __future__ import annotations

import ast
from pathlib import Path

from pytest_genie.checks import CHECKS, CONCURRENCY_SWEEP, GUIDE_CHECKS, KINDS, Key

#: The testing guide's checks by side, and Genie's network_throughput after network_connectivity.
#: A rename here is a rename in every result file and every report that reads old ones, so the
#: list is spelled out, not derived.
GUIDE = {
    "server": ["environment_setup", "server_startup", "gpu_detection", "server_operations",
               "server_statistics"],
    "client": ["network_connectivity", "network_throughput", "server_connectivity",
               "http_tensor_transfer", "remote_lazytensor_execution", "performance_comparison",
               "multi_operation_chain", "error_handling", "large_tensor_handling"],
}
#: From the guide's week-2 list ("LLM Decode Co-location"), after its 13.
WEEK_TWO = {"server": [], "client": ["llm_decode_colocation"]}
TESTS = Path(__file__).resolve().parents[2]  # tests/
CHECK_FOLDERS = [TESTS / kind for kind in KINDS]


def _marks(node: ast.expr) -> set[str]:
    """Marker names in ``pytest.mark.X``, ``pytest.mark.X(...)`` or a list of them."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return set().union(*(_marks(e) for e in node.elts))
    if isinstance(node, ast.Call):
        node = node.func
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "mark" and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "pytest"):
        return {node.attr}
    return set()


def _test_functions(folders: list[Path]) -> dict[str, list[tuple[Path, set[str]]]]:
    """Every test function in ``folders`` by name: where it is, and the markers it carries."""
    found: dict[str, list[tuple[Path, set[str]]]] = {}
    for path in sorted(p for folder in folders for p in folder.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_marks: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
                module_marks |= _marks(node.value)
        scopes: list[tuple[list[ast.stmt], set[str]]] = [(tree.body, module_marks)]
        scopes += [(c.body, module_marks.union(*(_marks(d) for d in c.decorator_list)))
                   for c in tree.body if isinstance(c, ast.ClassDef) and c.name.startswith("Test")]
        for body, inherited in scopes:
            for fn in body:
                if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name.startswith("test_"):
                    marks = inherited.union(*(_marks(d) for d in fn.decorator_list))
                    found.setdefault(fn.name, []).append((path, marks))
    return found


def test_checks_are_the_guides_in_its_order_then_the_suites_own() -> None:
    in_order = [(name, kind) for kind in KINDS for name in GUIDE[kind]]
    in_order += [(CONCURRENCY_SWEEP.name, "client")]  # in the run order: its module runs first
    in_order += [(name, kind) for kind in KINDS for name in WEEK_TWO[kind]]
    assert [(c.name, c.kind) for c in CHECKS] == in_order
    # the guide's own 13, without Genie's network baseline
    assert [c.name for c in GUIDE_CHECKS] == [
        n for kind in KINDS for n in GUIDE[kind] if n != "network_throughput"]


def test_every_headline_figure_is_a_details_key() -> None:
    keys = {v for k, v in vars(Key).items() if k.isupper()}
    for check in CHECKS:
        assert set(check.figures) <= keys, check


def test_every_check_has_exactly_one_test_function_with_its_marker() -> None:
    found = _test_functions(CHECK_FOLDERS)
    for check in CHECKS:
        places = found.get(check.test_name, [])
        assert len(places) == 1, f"{check.test_name}: expected one test function, found {places}"
        path, marks = places[0]
        other = set(KINDS) - {check.kind}
        assert check.kind in marks and not marks & other, f"{path}::{check.test_name} is marked {marks}"


def test_every_marked_test_function_is_a_documented_check() -> None:
    """A marked test is recorded and filed; one the report does not know is a check it cannot read."""
    documented = {c.test_name for c in CHECKS}
    marked = {f"{path.relative_to(TESTS)}::{name}"
              for name, places in _test_functions(CHECK_FOLDERS).items()
              for path, marks in places if marks & set(KINDS) and name not in documented}
    assert not marked, f"marked server/client tests that pytest_genie.checks does not list: {sorted(marked)}"

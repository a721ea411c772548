"""The import graph of src/tonrail stays layered: no import cycles between modules, no two
packages importing each other, and the foundation (settings, errors, chain rules...) below
every domain.

The graph is read from the source with `ast`; nothing is imported. Every import statement
that runs counts, also one inside a function (it runs later, but it runs). An import under
`if TYPE_CHECKING:` never runs: it counts for the package rules (it is still a dependency)
but not for cycles, which are about the order modules execute in (today the one such import
is chain/address.py naming chain/network.py's TonNetwork in an annotation, while network.py
imports address.py at runtime). `from a.b import c` is an edge to `a.b` and, when `c` is a
module, to `a.b.c`; the parents that Python imports first are not edges, since a submodule
that imports a sibling never reads its parent's names.

No two packages import each other (issue 13 removed the last pairs; fees reads payments,
and payments is handed the fee-decision lookup from above).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Below every domain: these import nothing of tonrail outside this set.
FOUNDATION = (
    *("clock", "db", "errors", "ids", "logs", "money", "settings", "chain", "states"),
    "json_text",  # JSON rendered once, for the database (db.py) and the HTTP answer
    "aws_secrets",  # settings from AWS Secrets Manager, read by settings.py
)


@dataclass(frozen=True)
class Graph:
    runtime: dict[str, frozenset[str]]  # module -> modules it imports when it runs
    typing: dict[str, frozenset[str]]  # module -> modules it imports under TYPE_CHECKING


def _modules() -> dict[str, tuple[Path, bool]]:
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted((SRC / "tonrail").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: resolve against this module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{alias.name}" for alias in node.names]


@cache
def graph() -> Graph:
    modules = _modules()
    runtime: dict[str, set[str]] = defaultdict(set)
    typing: dict[str, set[str]] = defaultdict(set)
    for module, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        type_only: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _is_type_checking(node):
                type_only.update(id(inner) for body in node.body for inner in ast.walk(body))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            edges = typing if id(node) in type_only else runtime
            for target in _imported(node, module, is_package):
                if target in modules and target != module:
                    edges[module].add(target)
    return Graph(
        {m: frozenset(runtime[m]) for m in modules}, {m: frozenset(typing[m]) for m in modules}
    )


def unit(module: str) -> str:
    """The top-level package (or module) of tonrail a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def cross_edges() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> the module edges behind it, runtime and typing."""
    g = graph()
    pairs: dict[tuple[str, str], list[str]] = defaultdict(list)
    for edges in (g.runtime, g.typing):
        for source, targets in edges.items():
            for target in targets:
                if unit(source) != unit(target):
                    pairs[(unit(source), unit(target))].append(f"{source} -> {target}")
    return pairs


def mutual_pairs() -> dict[tuple[str, str], list[str]]:
    pairs = cross_edges()
    return {
        (a, b): sorted(pairs[(a, b)] + pairs[(b, a)]) for a, b in pairs if a < b and (b, a) in pairs
    }


def test_the_graph_is_read() -> None:
    # A reader that found nothing would pass every rule below.
    g = graph()
    assert "tonrail.chain.network" in g.runtime["tonrail.payments.service"]
    assert "tonrail.chain.network" in g.typing["tonrail.chain.address"]
    assert "tonrail.chain.address" in g.runtime["tonrail.chain.network"]
    assert len(cross_edges()) > 50


def test_cycles_are_found() -> None:
    edges = {
        "a": frozenset({"b"}),
        "b": frozenset({"c"}),
        "c": frozenset({"a"}),
        "d": frozenset({"a"}),
        "e": frozenset(),
    }
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_no_import_cycles() -> None:
    found = cycles(graph().runtime)
    assert found == [], "modules that import each other (directly or around a loop):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )


def test_no_pair_of_packages_imports_each_other() -> None:
    found = mutual_pairs()
    assert found == {}, "packages that import each other:\n" + "\n".join(
        f"{a} <-> {b}: " + "; ".join(edges) for (a, b), edges in found.items()
    )


def test_the_foundation_imports_no_domain() -> None:
    low = set(FOUNDATION)
    climbing = sorted(
        edge
        for (source, target), edges in cross_edges().items()
        if source in low and target not in low
        for edge in edges
    )
    assert climbing == []


# What a rail adapter may build on: plain data in, plain data out (rails/base.py).
ADAPTER_DEPENDENCIES = (
    *("rails", "chain", "settings", "errors", "money", "rates", "clock", "ids"),
    "states",  # the statuses of payments and attempts (tonrail/states.py)
    "aws_secrets",  # quiet_botocore: the KMS KEK keeps botocore from logging the data key
)


def test_rails_are_adapters_on_plain_data() -> None:
    """rails/ never reaches into the pipeline or the domains (no sessions, no ORM rows of
    payments, no books): processing/ hands it `PaymentView`s and integers. Its own table
    declarations (`rails.models`, `rails.ton.models`) are the one use of the database."""
    tables = {"tonrail.rails.models", "tonrail.rails.ton.models"}
    allowed = {f"tonrail.{name}" for name in ADAPTER_DEPENDENCIES}
    reaching = sorted(
        f"{source} -> {target}"
        for source, targets in graph().runtime.items()
        if source.startswith("tonrail.rails.") and source not in tables
        for target in targets
        if target != "tonrail"
        and not any(target == a or target.startswith(a + ".") for a in allowed)
    )
    assert reaching == []


def test_the_pipeline_is_not_imported_by_what_it_drives() -> None:
    """processing/ drives rails, payments, fees, ledger...: none of them imports it back."""
    below = ("rails", "payments", "fees", "ledger", "limits", "events", "security", "monitoring")
    up = sorted(
        edge
        for (source, target), edges in cross_edges().items()
        if source in below and target == "processing"
        for edge in edges
    )
    assert up == []

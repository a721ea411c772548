"""No status spelled out as a string literal outside the `states.py` modules.

Statuses are `StrEnum`s defined in `states.py` files; code compares, assigns, filters and
stores them by member (`PaymentStatus.QUEUED`), never by text. This test reads every module
of `src/tonrail` (AST, no import side effects) and fails on a string constant equal to a
status value where a status is meant: compared with something named `status`, assigned to
it, passed as `status=`, filtered with `.status.in_(...)`, or stored under a `"status"` key.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

import pytest

import tonrail

SRC = Path(tonrail.__file__).parent

# (path below src/tonrail, value) -> why the literal stays. Keep this list short and honest.
_STRIPE = "Stripe's own PaymentIntent/Payout statuses, read from its API and mapped to ours"
ALLOWED: dict[tuple[str, str], str] = {
    ("rails/stripe/rail.py", "succeeded"): _STRIPE,
    ("rails/stripe/rail.py", "canceled"): _STRIPE,
    ("rails/stripe/rail.py", "failed"): _STRIPE,
    ("localnet/chain.py", "frozen"): "a TON account's state (account_frozen), as TON names it",
}


def _status_enums() -> list[type[StrEnum]]:
    """Every StrEnum defined in a `states.py` module of the package."""
    found: list[type[StrEnum]] = []
    for info in pkgutil.walk_packages(tonrail.__path__, "tonrail."):
        if info.name.rsplit(".", 1)[-1] != "states":
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, StrEnum)
                and value is not StrEnum
                and value.__module__ == module.__name__
            ):
                found.append(value)
    return found


ENUMS = _status_enums()
VALUES = frozenset(m.value for e in ENUMS for m in e)


# Calls that take a status as a positional argument.
MOVERS = frozenset(
    {"transition", "move_payment", "move_payments", "move_attempt", "AttemptMove", "initial_status"}
)


def _is_status(node: ast.expr) -> bool:
    """Does this expression name a status (`x.status`, `status`, `row["status"]`)?"""
    if isinstance(node, ast.Attribute):
        return node.attr == "status" or node.attr.endswith("_status")
    if isinstance(node, ast.Name):
        return node.id == "status" or node.id.endswith("_status")
    if isinstance(node, ast.Subscript):
        key = node.slice
        return isinstance(key, ast.Constant) and key.value == "status"
    return False


def _names_statuses(node: ast.expr) -> bool:
    """A name that says it holds statuses (`FINAL_STATES`, `ACTIVE_STATUSES`)."""
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return any(word in name.upper() for word in ("STATUS", "STATES"))


def _one_enum(values: list[str]) -> bool:
    return any(all(v in {m.value for m in e} for v in values) for e in ENUMS)


def _constants(node: ast.expr | None) -> Iterator[ast.Constant]:
    """String constants in `node`, looking into tuples, lists, sets and starred items."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for item in node.elts:
            yield from _constants(item)
    elif isinstance(node, ast.Starred):
        yield from _constants(node.value)
    elif isinstance(node, ast.IfExp):
        yield from _constants(node.body)
        yield from _constants(node.orelse)


def _status_literals(tree: ast.AST) -> Iterator[ast.Constant]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_status(s) for s in sides):
                for side in sides:
                    yield from _constants(side)
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg is not None and (kw.arg == "status" or kw.arg.endswith("_status")):
                    yield from _constants(kw.value)
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name in MOVERS:
                for arg in node.args:
                    yield from _constants(arg)
            if (
                isinstance(func, ast.Attribute)
                and func.attr in ("in_", "not_in", "notin_", "is_", "isnot")
                and _is_status(func.value)
            ):
                for arg in node.args:
                    yield from _constants(arg)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(_is_status(t) or _names_statuses(t) for t in targets):
                yield from _constants(node.value)
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            # A collection of two or more statuses of one enum is a status set, wherever.
            values = [
                e.value
                for e in node.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            ]
            if len(values) >= 2 and len(values) == len(node.elts) and _one_enum(values):
                yield from _constants(node)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "status":
                    yield from _constants(value)


def _found() -> dict[str, set[tuple[int, str]]]:
    found: dict[str, set[tuple[int, str]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if path.name == "states.py":
            continue
        for const in _status_literals(ast.parse(path.read_text(), filename=rel)):
            if const.value in VALUES and (rel, const.value) not in ALLOWED:
                found.setdefault(rel, set()).add((const.lineno, const.value))
    return found


def test_the_status_enums_are_found() -> None:
    names = {e.__name__ for e in ENUMS}
    assert {
        *("PaymentStatus", "AttemptStatus", "PollStatus", "RequestStatus", "TransferStatus"),
        *("TraceStatus", "DepositStatus", "AlertStatus", "DeliveryStatus", "EventStatus"),
    } <= names
    assert "queued" in VALUES and "submitted" in VALUES


def test_no_status_literal_outside_states_modules() -> None:
    found = {rel: sorted(hits) for rel, hits in _found().items()}
    assert not found, (
        "status literals outside states.py (use the StrEnum member instead): "
        + "; ".join(f"{rel}: {hits}" for rel, hits in found.items())
    )


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ('if p.status == "queued": pass', True),
        ('x = a.status in ("created", "submitted")', True),
        ('q = select(A).where(A.status.in_(("confirmed", "failed")))', True),
        ('p = Payment(status="processing")', True),
        ('body = {"status": "succeeded"}', True),
        ('p.status = "canceled"', True),
        ('d.status = "credited" if ok else "resolved"', True),
        ("if p.status == PaymentStatus.QUEUED: pass", False),
        ('await service.transition(session, p, "queued", actor="x")', True),
        ('log.info("queued")', False),
        ('if kind == "failed": pass', False),
        ('FINISHED = ("confirmed", "failed", "expired")', True),
        ('LIVE_STATES = {"created"}', True),
        ('OUTCOMES = ("pending", "confirmed", "failed", "diverted")', False),
    ],
)
def test_the_scan_itself(source: str, caught: bool) -> None:
    hits = [c.value for c in _status_literals(ast.parse(source)) if c.value in VALUES]
    assert bool(hits) is caught

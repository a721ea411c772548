"""Migrations stay backward compatible for one release, so a rollback never needs a
down-migration (docs/DEPLOY.md, "Rollback"): the previous release's code keeps working on
the new schema. This reads every migration's upgrade() and refuses what would break code
that does not know about the change:

- dropping or renaming a table or a column (the old code still reads and writes it);
- a new NOT NULL column, or a column made NOT NULL, without a server default (the old
  code's INSERTs do not set it);
- the same through raw SQL in op.execute.

Such a change is made in two releases instead (docs/DEPLOY.md says how). A migration that
must break the rule goes in ALLOWED with the reason, and the release notes say that a
rollback across it needs a restore."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import tonrail

VERSIONS = Path(tonrail.__file__).parent / "migrations" / "versions"
DESTRUCTIVE_CALLS = {"drop_table", "drop_column", "rename_table"}
RAW_SQL = re.compile(r"\b(drop\s+(table|column)|rename\s+(to|column))\b", re.IGNORECASE)
# file name -> why it may break the rule
ALLOWED: dict[str, str] = {}


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_false(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _column_not_null_without_default(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and getattr(node.func, "attr", getattr(node.func, "id", "")) == "Column"
        and _is_false(_kw(node, "nullable"))
        and _kw(node, "server_default") is None
    )


def breaking_operations(source: str) -> list[str]:
    """What upgrade() in `source` does that the previous release's code cannot live with."""
    tree = ast.parse(source)
    upgrade = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"), None
    )
    if upgrade is None:
        return []
    found: list[str] = []
    for node in ast.walk(upgrade):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name, line = node.func.attr, node.lineno
        if name in DESTRUCTIVE_CALLS:
            found.append(f"line {line}: {name}")
        elif name == "alter_column":
            if _kw(node, "new_column_name") is not None:
                found.append(f"line {line}: alter_column renames a column")
            if _is_false(_kw(node, "nullable")) and _kw(node, "server_default") is None:
                found.append(f"line {line}: alter_column makes a column NOT NULL without default")
        elif name == "add_column":
            if any(_column_not_null_without_default(a) for a in node.args):
                found.append(f"line {line}: add_column NOT NULL without server_default")
        elif name == "execute":
            text = " ".join(
                a.value
                for a in ast.walk(node)
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            )
            if RAW_SQL.search(text):
                found.append(f"line {line}: raw SQL drops or renames")
    return found


def test_the_versions_are_found() -> None:
    assert len(list(VERSIONS.glob("*.py"))) >= 10


@pytest.mark.parametrize("path", sorted(VERSIONS.glob("*.py")), ids=lambda p: p.name)
def test_every_migration_keeps_the_previous_release_working(path: Path) -> None:
    if path.name in ALLOWED:
        pytest.skip(ALLOWED[path.name])
    assert breaking_operations(path.read_text()) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('op.drop_table("payments")', "drop_table"),
        ('with op.batch_alter_table("t") as b:\n        b.drop_column("c")', "drop_column"),
        ('op.rename_table("a", "b")', "rename_table"),
        ('op.alter_column("t", "a", new_column_name="b")', "renames a column"),
        ('op.alter_column("t", "a", nullable=False)', "NOT NULL without default"),
        (
            'op.add_column("t", sa.Column("c", sa.Integer(), nullable=False))',
            "NOT NULL without server_default",
        ),
        ('op.execute("ALTER TABLE t DROP COLUMN c")', "raw SQL"),
        ('op.execute("ALTER TABLE t RENAME TO u")', "raw SQL"),
    ],
)
def test_the_check_catches_each_breaking_change(body: str, expected: str) -> None:
    source = f"import sqlalchemy as sa\nfrom alembic import op\n\ndef upgrade():\n    {body}\n"
    [problem] = breaking_operations(source)
    assert expected in problem


@pytest.mark.parametrize(
    "body",
    [
        'op.add_column("t", sa.Column("c", sa.Integer(), nullable=False, server_default="0"))',
        'op.add_column("t", sa.Column("c", sa.Integer(), nullable=True))',
        'op.create_index("ix", "t", ["c"])',
        'op.drop_index("ix_old")',
        'op.alter_column("t", "a", nullable=False, server_default="x")',
    ],
)
def test_the_check_lets_compatible_changes_pass(body: str) -> None:
    source = f"import sqlalchemy as sa\nfrom alembic import op\n\ndef upgrade():\n    {body}\n"
    assert breaking_operations(source) == []


def test_downgrade_may_drop() -> None:
    source = "from alembic import op\n\ndef downgrade():\n    op.drop_table('t')\n"
    assert breaking_operations(source) == []

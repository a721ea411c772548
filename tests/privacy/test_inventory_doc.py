"""docs/PRIVACY.md stays the inventory: it names every table of the service, and every
table the code searches for personal data is one it says holds some."""

from __future__ import annotations

from tonrail.models import metadata
from tonrail.privacy.inventory import PLACES
from tonrail.settings import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "PRIVACY.md").read_text()


def _rows() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in DOC.splitlines():
        if line.startswith("| `"):
            cells = line.split("|")
            for name in cells[1].replace("`", "").split(","):
                rows[name.strip()] = cells[2]
    return rows


def test_every_table_is_in_the_inventory() -> None:
    missing = sorted(t.name for t in metadata.sorted_tables if t.name not in _rows())
    assert missing == [], f"docs/PRIVACY.md does not say what these tables hold: {missing}"


def test_every_searched_table_is_documented_as_holding_personal_data() -> None:
    rows = _rows()
    for place in PLACES:
        assert not rows[place.table].strip().startswith("none"), place.table

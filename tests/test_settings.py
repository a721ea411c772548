"""Configuration: .env.example documents every setting and loads as it is."""

from __future__ import annotations

import re
from pathlib import Path

from tonrail.settings import REPO_ROOT, Settings

EXAMPLE = REPO_ROOT / ".env.example"


def test_env_example_lists_every_setting() -> None:
    names = {
        line.split("=", 1)[0].strip().lower()
        for line in EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    }
    assert set(Settings.model_fields) <= names, set(Settings.model_fields) - names


def test_env_example_loads_with_embedded_defaults() -> None:
    settings = Settings(_env_file=str(EXAMPLE))  # type: ignore[call-arg]
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.approval_threshold_usdt == 1_000_000 * 10**6
    assert settings.daily_volume_limit_usdt == 10_000_000 * 10**6


def test_database_url_forms(tmp_path: Path) -> None:
    def url(value: str) -> str:
        return Settings(_env_file=None, database_url=value).effective_database_url  # type: ignore[call-arg]

    assert url("postgres://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert url("postgresql://u@h:5432/db") == "postgresql+asyncpg://u@h:5432/db"
    assert url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"


def _read_settings() -> set[str]:
    """Every `<something>.name` attribute read in src/tonrail outside settings.py (import
    lines left out: `tonrail.security.api_keys` is a module, not a read of API_KEYS)."""
    reads: set[str] = set()
    for path in (REPO_ROOT / "src" / "tonrail").rglob("*.py"):
        if path.name == "settings.py" and path.parent.name == "tonrail":
            continue
        for line in path.read_text().splitlines():
            if line.lstrip().startswith(("import ", "from ")):
                continue
            reads.update(re.findall(r"\.([a-z_][a-z0-9_]*)", line))
    return reads


def test_every_setting_in_env_example_is_read_somewhere() -> None:
    """A documented setting that no code reads promises what nothing does (issue 17)."""
    names = {
        line.split("=", 1)[0].strip().lower()
        for line in EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    }
    settings_py = (REPO_ROOT / "src" / "tonrail" / "settings.py").read_text()
    # Read inside settings.py itself (derived properties) counts too: `self.name`.
    inside = set(re.findall(r"self\.([a-z_][a-z0-9_]*)", settings_py))
    unread = sorted(names - _read_settings() - inside)
    assert unread == [], f"settings read nowhere in src/: {unread}"

"""requirements.lock (the image's dependencies, `make lock`) still fits pyproject.toml."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tonrail.settings import REPO_ROOT


def _locked() -> dict[str, str]:
    text = (REPO_ROOT / "requirements.lock").read_text()
    return {
        canonicalize_name(m[1]): m[2]
        for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", text, re.MULTILINE)
    }


def test_every_runtime_dependency_is_locked_within_its_range() -> None:
    locked = _locked()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    stale = []
    for spec in project["dependencies"]:
        req = Requirement(spec)
        version = locked.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            stale.append(f"{spec} (locked: {version})")
    assert not stale, f"run `make lock`: {stale}"


def test_every_locked_package_has_hashes() -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9])", (REPO_ROOT / "requirements.lock").read_text())
    pins = [b for b in blocks if "==" in b.split("\n", 1)[0]]
    assert len(pins) == len(_locked()) > 30
    assert all("--hash=sha256:" in b for b in pins)

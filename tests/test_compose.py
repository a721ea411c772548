"""compose.yaml describes the stack of docs/CONTAINERS.md (it needs a registry to run, so its
containers are proven through deploy/docker/stack.sh in tests/test_image.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tonrail.settings import REPO_ROOT

COMPOSE = REPO_ROOT / "compose.yaml"


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def test_the_stack_has_every_process_once_or_twice() -> None:
    s = _services()
    assert set(s) == {
        "postgres", "redis", "localnet", "migrate", "bootstrap", "worker", "serve", "balancer",
    }  # fmt: skip
    assert s["worker"]["deploy"]["replicas"] == 2 and s["worker"]["command"] == ["worker"]
    assert s["serve"]["deploy"]["replicas"] == 2 and s["serve"]["command"] == ["serve"]
    assert s["migrate"]["command"] == ["migrate"] and s["migrate"]["restart"] == "no"
    assert s["migrate"]["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert s["balancer"]["ports"] == ["127.0.0.1:8100:8100"]


def test_every_tonrail_service_is_one_read_only_image() -> None:
    s = _services()
    tonrail = [n for n in s if n not in ("postgres", "redis")]
    assert {s[n]["image"] for n in tonrail} == {"${TONRAIL_IMAGE:-localhost/tonrail:latest}"}
    for name in tonrail:
        assert s[name]["read_only"] is True, name
        assert s[name]["tmpfs"] == ["/tmp"], name
        assert "user" not in s[name], f"{name} must run as the image's non-root user"


def test_workers_and_servers_start_after_the_database_is_migrated() -> None:
    s = _services()
    assert s["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert s["bootstrap"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert s["worker"]["depends_on"]["bootstrap"]["condition"] == "service_completed_successfully"
    assert s["serve"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_files_the_services_mount_exist() -> None:
    s = _services()
    for name in ("bootstrap", "balancer"):
        (mount,) = [v for v in s[name]["volumes"] if v.startswith("./")]
        assert (REPO_ROOT / mount.split(":")[0]).is_dir()
        script = Path(s[name]["entrypoint"][1]).name
        assert (REPO_ROOT / "deploy" / "docker" / script).is_file(), script


def test_podman_compose_accepts_the_file() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "podman-compose"), "-f", str(COMPOSE), "config"],
        capture_output=True, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "balancer" in result.stdout

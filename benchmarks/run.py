"""Run every benchmark and write docs/BENCHMARKS.md (`make bench`).

Each `benchmarks/bench_*.py` module has `main() -> str` returning one markdown section. They
run in a fixed order (ORDER first, then any others by name), each in its own process so a
crash or hang in one cannot take the others down; a failure becomes an error in its section.

    python -m benchmarks.run               # all benchmarks, rewrite docs/BENCHMARKS.md
    python -m benchmarks.run --only api    # one benchmark (bench_api); other sections kept
    python -m benchmarks.run --list        # the benchmarks that would run

BENCH_TIMEOUT_SECONDS bounds each benchmark (default 1800).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUTPUT = REPO / "docs" / "BENCHMARKS.md"
ORDER = ("bench_api", "bench_localnet")
TITLE = "# Benchmarks"
BLOCK = re.compile(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->\n", re.DOTALL)


def discover() -> list[str]:
    """Module names of the benchmarks, in their fixed order."""
    found = sorted(p.stem for p in HERE.glob("bench_*.py"))
    return [m for m in ORDER if m in found] + [m for m in found if m not in ORDER]


def resolve(name: str, modules: list[str]) -> str:
    candidate = name if name.startswith("bench_") else f"bench_{name}"
    candidate = candidate.removesuffix(".py")
    if candidate not in modules:
        raise SystemExit(f"no benchmark {name!r}; have: {', '.join(modules) or 'none'}")
    return candidate


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except FileNotFoundError:
        return ""


def _git_head(path: Path) -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=path,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def machine() -> list[str]:
    """Header lines describing where the numbers were measured."""
    cpu = "unknown"
    mem = "unknown"
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
            break
    spec = importlib.util.find_spec("tonrail")
    origin = Path(spec.origin).parent if spec and spec.origin else None
    if origin == REPO / "src" / "tonrail":
        commit = _git_head(REPO)
        code = f"this repository's `src/` at commit `{commit}` (plus uncommitted changes)"
    else:
        code = f"`{origin}` (not this repository's `src/`)"
    return [
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {os.cpu_count()} CPUs (`nproc`), {cpu}, {mem} RAM, "
        f"{platform.system()} {platform.release()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- Code under test: `tonrail` from {code}",
        "- Command: `make bench` (one benchmark: `.venv/bin/python -m benchmarks.run --only NAME`)",
    ]


def run_one(module: str, timeout: float) -> tuple[str, float]:
    """Run `benchmarks.<module>.main()` in a child process; returns (section, seconds)."""
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("r", suffix=".md", prefix=f"{module}-") as out:
        cmd = [sys.executable, "-m", "benchmarks.run", "--child", module, "--out", out.name]
        proc = subprocess.Popen(cmd, cwd=REPO)
        try:
            status = proc.wait(timeout=timeout)
            section = Path(out.name).read_text().strip()
            section = section or _failed(module, f"exited with status {status}")
        except subprocess.TimeoutExpired:
            # SIGTERM first, so the benchmark can stop the servers it started.
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            section = _failed(module, f"did not finish within {timeout:.0f} s")
    return section, time.monotonic() - started


def _failed(module: str, message: str) -> str:
    return f"## {module}\n\n**This benchmark failed:**\n\n```\n{message.strip()}\n```"


def child(module: str, out: Path) -> int:
    """In the child process: import and run one benchmark, write its section to `out`."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds, so context managers stop their servers

    signal.signal(signal.SIGTERM, stop)
    try:
        section = importlib.import_module(f"benchmarks.{module}").main()
        if not isinstance(section, str):
            raise TypeError(f"{module}.main() returned {type(section).__name__}, not str")
        out.write_text(section.strip() + "\n")
        return 0
    except BaseException:
        out.write_text(_failed(module, traceback.format_exc()) + "\n")
        traceback.print_exc()
        return 1


def write(
    sections: dict[str, str], modules: list[str], durations: dict[str, float], header: list[str]
) -> None:
    """Write docs/BENCHMARKS.md; sections not re-run this time are kept from the old file."""
    old = {m.group(1): m.group(2).strip() for m in BLOCK.finditer(_read(str(OUTPUT)) + "\n")}
    merged = {**old, **sections}
    order = [m for m in modules if m in merged] + [m for m in merged if m not in modules]
    lines = [
        TITLE,
        "",
        "Generated by `benchmarks/run.py`; do not edit by hand — re-run `make bench`.",
        "",
        *header,
    ]
    if durations:
        took = ", ".join(f"{m} {s:.0f} s" for m, s in durations.items())
        lines.append(f"- Run time of the benchmarks re-run this time: {took}")
    lines.append("")
    for module in order:
        lines += [f"<!-- bench:{module} -->", merged[module].strip(), f"<!-- /bench:{module} -->"]
        lines.append("")
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", metavar="NAME", help="run one benchmark (e.g. api)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.out)
    modules = discover()
    if args.list:
        print("\n".join(modules))
        return 0
    selected = [resolve(args.only, modules)] if args.only else modules
    timeout = float(os.environ.get("BENCH_TIMEOUT_SECONDS", "1800"))
    sections: dict[str, str] = {}
    durations: dict[str, float] = {}
    failures = 0
    header = machine()  # at the start: the commit under test, not one made during the run
    for module in selected:
        print(f"== {module}", file=sys.stderr, flush=True)
        section, seconds = run_one(module, timeout)
        sections[module] = section
        durations[module] = seconds
        failures += "**This benchmark failed:**" in section
        print(f"== {module}: {seconds:.0f} s", file=sys.stderr, flush=True)
    write(sections, modules, durations, header)
    print(f"wrote {OUTPUT.relative_to(REPO)}", file=sys.stderr)
    if failures:
        # A failed benchmark is reported in its section; the others' results still count.
        print(f"warning: {failures} benchmark(s) failed, see their sections", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The soak run's verdict (benchmarks/soak.py: judge), on made-up samples: it passes a flat
run and names each kind of drift. The run itself is `make soak` (30 minutes, not in CI)."""

from __future__ import annotations

from benchmarks.soak import Samples, judge

MIB = 2**20


def _flat() -> Samples:
    s = Samples()
    for t in range(0, 1800, 10):
        s.procs.setdefault("api-0", []).append((t, 120 * MIB + (t % 30) * 1024, 40))
        s.procs.setdefault("worker-0", []).append((t, 150 * MIB, 30))
        s.latencies += [(t + i / 4, 20.0 + (i % 3)) for i in range(4)]
    return s


def test_a_flat_run_passes() -> None:
    failures, table = judge(_flat(), 300, 300, 1800)
    assert failures == []
    assert "| api-0 | 120.0 MiB | 120.0 MiB | +0.0 % | 40 | 40 |" in table
    assert "| p99 latency | 22.0 ms (120 requests) | 22.0 ms" in table


def test_growth_leaks_and_slowdown_are_named() -> None:
    s = _flat()
    s.procs["worker-0"] = [
        (t, int((150 + t / 60) * MIB), 30 + t // 100) for t in range(0, 1800, 10)
    ]
    s.latencies = [(at, ms * (2 if at > 1500 else 1)) for at, ms in s.latencies]
    s.errors = 3
    failures, _ = judge(s, 300, 300, 1800)
    assert any(f.startswith("worker-0: RSS grew") for f in failures)
    assert any(f.startswith("worker-0: open fds") for f in failures)
    assert any(f.startswith("p99 22.0 ms -> 44.0 ms") for f in failures)
    assert "3 requests answered 4xx" in failures
    assert not any(f.startswith("api-0") for f in failures)

"""`--cpu-durations N`: the N tests (set-up included) that cost the most CPU time, this process and its children.

Wall-clock `--durations` mean little on a shared machine; CPU seconds do not depend on what else runs. Works with
xdist too: each worker measures its own tests and sends the figures with the tear-down report, and the summary also
says how long each worker was busy and when it ran out of work (a long test left to the end shows there). Hooks
re-exported by tests/conftest.py."""

from __future__ import annotations

import resource
import time

import pytest

_COST: dict[str, tuple[float, str, float, float]] = {}  # node id: (CPU s, worker, wall start, wall end)
_START: dict[str, tuple[float, float]] = {}
_KEY = "cpu_seconds"


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def pytest_addoption(parser):
    parser.addoption("--cpu-durations", type=int, default=None, metavar="N",
                     help="list the N tests that cost the most CPU seconds (set-up, call and tear-down together)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    if item.config.getoption("cpu_durations") is None:
        yield
        return
    if call.when == "setup":
        _START[item.nodeid] = (_cpu(), time.time())
    outcome = yield
    if call.when == "teardown" and item.nodeid in _START:
        cpu0, wall0 = _START.pop(item.nodeid)
        outcome.get_result().user_properties.append((_KEY, (_cpu() - cpu0, wall0, time.time())))


def pytest_runtest_logreport(report):
    for key, value in getattr(report, "user_properties", ()):
        if key == _KEY:
            seconds, wall0, wall1 = value
            _COST[report.nodeid] = (seconds, getattr(report, "node", None) and report.node.gateway.id or "main",
                                    wall0, wall1)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n = config.getoption("cpu_durations")
    if n is None or not _COST:
        return
    ranked = sorted(_COST.items(), key=lambda kv: -kv[1][0])
    total = sum(v[0] for v in _COST.values())
    terminalreporter.write_sep("=", f"CPU seconds per test: {total:.0f} s in all, the {min(n, len(ranked))} largest")
    for node, (seconds, worker, *_) in ranked[:n]:
        terminalreporter.write_line(f"{seconds:8.1f}s  {worker:>4}  {node}")
    by_file: dict[str, float] = {}
    for node, (seconds, *_) in _COST.items():
        by_file[node.split("::")[0]] = by_file.get(node.split("::")[0], 0.0) + seconds
    terminalreporter.write_sep("-", "CPU seconds per file")
    for name, seconds in sorted(by_file.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.1f}s  {name}")
    first = min(v[2] for v in _COST.values())
    last = max(v[3] for v in _COST.values())
    terminalreporter.write_sep("-", f"per worker (the tests span {last - first:.0f} s of wall time)")
    for worker in sorted({v[1] for v in _COST.values()}):
        mine = [v for v in _COST.values() if v[1] == worker]
        busy = sum(v[3] - v[2] for v in mine)
        cpu = sum(v[0] for v in mine)
        end = max(v[3] for v in mine)
        terminalreporter.write_line(f"{worker:>4}: {len(mine)} tests, {busy:.0f} s busy, {cpu:.0f} CPU-s, "
                                    f"out of work {last - end:.0f} s before the end")

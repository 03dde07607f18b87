"""`--cpu-durations N`: the N tests (set-up included) that cost the most CPU time, this process and its children.

Wall-clock `--durations` mean little on a shared machine; CPU seconds do not depend on what else runs. Hooks re-exported
by tests/conftest.py."""

from __future__ import annotations

import resource

import pytest

_COST: dict[str, list[float]] = {}


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def pytest_addoption(parser):
    parser.addoption("--cpu-durations", type=int, default=None, metavar="N",
                     help="list the N tests that cost the most CPU seconds (set-up, call and tear-down together)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if item.config.getoption("cpu_durations") is None:
        yield
        return
    start = _cpu()
    yield
    _COST[item.nodeid] = [_cpu() - start]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n = config.getoption("cpu_durations")
    if n is None or not _COST:
        return
    ranked = sorted(_COST.items(), key=lambda kv: -kv[1][0])
    total = sum(v[0] for v in _COST.values())
    terminalreporter.write_sep("=", f"CPU seconds per test: {total:.0f} s in all, the {min(n, len(ranked))} largest")
    by_file: dict[str, float] = {}
    for node, (seconds,) in _COST.items():
        by_file[node.split("::")[0]] = by_file.get(node.split("::")[0], 0.0) + seconds
    for node, (seconds,) in ranked[:n]:
        terminalreporter.write_line(f"{seconds:8.1f}s  {node}")
    terminalreporter.write_sep("-", "CPU seconds per file")
    for name, seconds in sorted(by_file.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.1f}s  {name}")

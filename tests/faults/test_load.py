"""A short run of benchmarks/load.py asserting its invariants (never its timings)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_module() -> object:
    spec = importlib.util.spec_from_file_location("rt_load", ROOT / "benchmarks" / "load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(180)
def test_short_load_keeps_the_invariants(tmp_path: Path) -> None:
    load = _load_module()
    report = load.run_load(
        seconds=5, threads=8, fault_rate=0.05, expire_every=1.0, workdir=tmp_path
    )  # type: ignore[attr-defined]
    assert report.queries > 0 and report.faults_fired > 0  # the load and the faults happened
    assert report.refreshes > 0  # tokens expired and were refreshed under load
    assert report.wrong_user_rows == 0 and report.wrong_row_count == 0
    assert report.stuck_threads == 0
    assert report.lost_grants == [] and report.reuse_detected == 0 and report.consents == 3
    assert report.ok

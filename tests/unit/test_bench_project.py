"""bench/project.py: the full library's build time projected from measured runs, with known answers."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

P = runpy.run_path(str(REPO / "bench" / "project.py"))  # its functions; main() runs only as a script


def _run(scale: float, rows: int, cores: int, stages: dict[str, float], floor: float) -> dict[str, Any]:
    return {
        "scale": scale,
        "landing": {"rows": rows},
        "machine": {"cores_used": cores},
        "floor": {"seconds": floor},
        "stages": [
            {"stage": k, "seconds": v, "peak_rss_mb": 4000, "disk_written_mb": rows / 10_000} for k, v in stages.items()
        ],
    }


def test_amdahls_serial_fraction_comes_from_one_core_against_two() -> None:
    assert P["serial_fraction"](200.0, 100.0) == 0.0  # twice as slow on one core: all parallel
    assert P["serial_fraction"](100.0, 100.0) == 1.0  # no faster on two: all serial
    assert P["serial_fraction"](150.0, 100.0) == pytest.approx(1 / 3)  # 1.5 = 1 / (s + (1 - s) / 2)
    assert P["serial_fraction"](300.0, 100.0) is None  # more than twice: Amdahl has no answer
    assert P["core_factor"](0.0, 16) == pytest.approx(2 / 16)
    assert P["core_factor"](1.0, 16) == 1.0
    assert P["core_factor"](1 / 3, 16) == pytest.approx(0.5625)  # (1/3 + 2/3/16) / (1/3 + 2/3/2)


def test_each_stage_is_carried_along_its_own_measured_curve_to_the_full_library() -> None:
    # a: linear in the data; b: the square root of it (a fixed cost that shrinks as a share)
    small = _run(0.01, 1_000_000, 2, {"a": 10.0, "b": 100.0}, 5.0)
    large = _run(0.05, 5_000_000, 2, {"a": 50.0, "b": 100.0 * 5**0.5}, 25.0)
    one = _run(0.01, 1_000_000, 1, {"a": 15.0, "b": 300.0}, 5.0)
    p = P["project"]([large, small], one, 1.0, 16)  # any order: sorted by size
    a, b = p["stages"]
    assert p["full_rows"] == 100_000_000 and p["scales"] == [0.01, 0.05]
    assert a["exponent"] == pytest.approx(1.0) and a["projected_s"] == pytest.approx(1000.0)
    assert b["exponent"] == pytest.approx(0.5) and b["projected_s"] == pytest.approx(1000.0, rel=1e-3)
    assert p["total_s"] == pytest.approx(2000.0, rel=1e-3)
    assert p["floor_exponent"] == pytest.approx(1.0) and p["floor_s"] == pytest.approx(500.0)
    # a: 1.5x on one core, s = 1/3; b: 3x, no fraction, taken as 0 (and as a's 1/3 in the worst case)
    assert a["serial_fraction"] == pytest.approx(0.333, abs=1e-3) and b["serial_fraction"] is None
    assert a["projected_cores_s"] == pytest.approx(562.5, abs=0.1)  # 1000 s x 0.5625
    assert b["projected_cores_s"] == pytest.approx(125.0, abs=0.2)  # 1000 s x 2/16
    assert b["projected_cores_worst_s"] == pytest.approx(562.5, abs=0.2)
    assert p["total_cores_s"] == pytest.approx(a["projected_cores_s"] + b["projected_cores_s"])
    text = P["markdown"](p)
    assert "| a | 10.0 / 50.0 | 1.00 |" in text and "n/a (r > 2)" in text


def test_a_stage_faster_on_one_core_gains_nothing_and_does_not_set_the_worst_fraction() -> None:
    # a: 1.5x on one core (s = 1/3); p: a few seconds of Python, faster on one core (r = 0.7)
    small = _run(0.01, 1_000_000, 2, {"a": 10.0, "p": 3.0}, 5.0)
    large = _run(0.05, 5_000_000, 2, {"a": 50.0, "p": 15.0}, 25.0)
    one = _run(0.01, 1_000_000, 1, {"a": 15.0, "p": 2.1}, 5.0)
    p = P["project"]([small, large], one, 1.0, 16)
    a, py = p["stages"]
    assert py["serial_fraction"] == 1.0 and py["projected_cores_s"] == pytest.approx(py["projected_s"])
    assert p["worst_serial_fraction"] == pytest.approx(1 / 3, abs=1e-3)  # a's, not p's clamped 1.0
    assert a["projected_cores_worst_s"] == pytest.approx(a["projected_cores_s"])


def test_the_command_refuses_runs_it_cannot_project_from(tmp_path: Path) -> None:
    small = _run(0.01, 1_000_000, 2, {"a": 10.0}, 5.0)
    paths = []
    for i, r in enumerate([small, _run(0.01, 1_000_000, 2, {"a": 11.0}, 5.0), _run(0.05, 5_000_000, 1, {"a": 9.0}, 5)]):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(r))
    with pytest.raises(SystemExit):
        P["main"]([str(paths[0]), str(paths[1])])  # one scale only
    with pytest.raises(SystemExit):
        P["main"]([str(paths[0]), str(paths[2])])  # two cores and one

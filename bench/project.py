"""Project a build of the full library from measured benchmark results, stage by stage.

    .venv/bin/python bench/project.py bench/results/A-s0.01.json bench/results/B-s0.05.json \\
        [--one-core bench/results/C-s0.01-c1.json] [--to 1.0] [--cores 16]

**Data size.** Each stage's wall time is fitted as ``t ~ rows^b`` (least squares on log-log, over
every run given on the same number of cores; with two runs, the line through both) and carried from
the largest run measured to ``--to`` (a fraction of K-CURE's 2.26 million patients) along that line.
Peak memory and disk are reported per stage at each scale: memory should stay flat, disk grows with
the data.

**Cores.** ``--one-core`` is a run at one of the same scales pinned to one core (``bench/run.py
--cores 1``). Amdahl's law, ``t(n) = t(1) * (s + (1 - s) / n)``, gives each stage's serial fraction
``s = 2 / r - 1`` from ``r = t(1 core) / t(2 cores)``. A stage that ran more than twice as slow on
one core (``r > 2``) has no Amdahl fraction; it is given ``s = 0`` (it would scale perfectly). A
stage that ran faster on one core (``r < 1``, such as a few seconds of Python) gains nothing from
cores: its own ``s`` is 1. A pessimistic column gives every stage the largest fraction measured in
``1 <= r <= 2``, where Amdahl's law explains the two timings (a stage faster on one core explains
nothing about the others). The projection to ``--cores`` scales the 2-core projection by
``(s + (1 - s) / n) / (s + (1 - s) / 2)``. It assumes the node's memory and disk grow with its cores,
and no network between them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

_spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).with_name("run.py"))
assert _spec is not None and _spec.loader is not None
_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_run)
fit_exponent = _run.fit_exponent


def serial_fraction(one_core_s: float, two_core_s: float) -> float | None:
    """Amdahl's serial fraction from a stage's one-core and two-core wall times; ``None`` when one core
    took more than twice as long (no fraction in [0, 1] explains that)."""
    r = one_core_s / two_core_s
    if r > 2:
        return None
    return min(1.0, max(0.0, 2 / r - 1))


def core_factor(s: float, cores: int) -> float:
    """The wall time on ``cores`` as a fraction of the time on two, for serial fraction ``s``."""
    return (s + (1 - s) / cores) / (s + (1 - s) / 2)


def grow(seconds: float, exponent: float, size_ratio: float) -> float:
    """A time measured at one size, carried to ``size_ratio`` times that size along ``t ~ size^b``."""
    return seconds * size_ratio**exponent


def _stages(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["stage"]: s for s in r["stages"]}


def project(runs: list[dict[str, Any]], one_core: dict[str, Any] | None, to: float, cores: int) -> dict[str, Any]:
    """The projection as a dict (see the module's docstring for the method)."""
    runs = sorted(runs, key=lambda r: r["landing"]["rows"])
    top = runs[-1]
    full_rows = top["landing"]["rows"] * to / top["scale"]
    ratio = full_rows / top["landing"]["rows"]
    c1 = _stages(one_core) if one_core else {}
    same = [r for r in runs if one_core and r["scale"] == one_core["scale"]]
    c2 = _stages(same[0]) if same else {}
    by = [_stages(r) for r in runs]
    sizes = [float(r["landing"]["rows"]) for r in runs]
    fit: dict[str, tuple[list[float], float, float | None]] = {}  # stage: (seconds, exponent, serial fraction)
    amdahl: list[float] = []  # the fractions of stages that one core ran 1-2 times slower than two
    for name in by[-1]:
        if all(name in b for b in by):
            secs = [b[name]["seconds"] for b in by]
            s = serial_fraction(c1[name]["seconds"], c2[name]["seconds"]) if name in c1 and name in c2 else None
            fit[name] = (secs, fit_exponent(sizes, secs), s)
            if s is not None and c1[name]["seconds"] >= c2[name]["seconds"]:
                amdahl.append(s)
    worst = max(amdahl) if amdahl else None
    rows: list[dict[str, Any]] = []
    total = 0.0  # of the unrounded projections
    for name, (secs, b, s) in fit.items():
        t = grow(secs[-1], b, ratio)
        total += t
        rows.append(
            {
                "stage": name,
                "seconds": secs,
                "peak_rss_mb": [x[name]["peak_rss_mb"] for x in by],
                "disk_mb": [x[name]["disk_written_mb"] for x in by],
                "exponent": round(b, 3),
                "projected_s": round(t, 1),
                "serial_fraction": None if s is None else round(s, 3),
                "projected_cores_s": round(t * core_factor(s or 0.0, cores), 1),
                "projected_cores_worst_s": None if worst is None else round(t * core_factor(worst, cores), 1),
            }
        )
    floors = [r["floor"]["seconds"] for r in runs]
    b_floor = fit_exponent(sizes, floors)
    return {
        "scales": [r["scale"] for r in runs],
        "rows": [r["landing"]["rows"] for r in runs],
        "to": to,
        "full_rows": round(full_rows),
        "cores": cores,
        "stages": rows,
        "total_s": round(total, 1),
        "total_cores_s": round(sum(x["projected_cores_s"] for x in rows), 1),
        "total_cores_worst_s": (
            round(sum(x["projected_cores_worst_s"] for x in rows), 1) if worst is not None else None
        ),
        "worst_serial_fraction": None if worst is None else round(worst, 3),
        "floor_exponent": round(b_floor, 3),
        "floor_s": round(grow(floors[-1], b_floor, ratio), 1),
    }


def markdown(p: dict[str, Any]) -> str:
    scales = " / ".join(f"{s:g}" for s in p["scales"])
    n = p["cores"]
    lines = [
        f"projected from scales {scales} ({', '.join(f'{r:,}' for r in p['rows'])} delivered rows) "
        f"to {p['to']:g} ({p['full_rows']:,} rows)",
        "",
        f"| stage | wall s ({scales}) | exponent | peak MB ({scales}) | disk MB ({scales}) | projected s, 2 cores "
        f"| serial fraction | projected s, {n} cores | {n} cores, worst fraction |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in p["stages"]:
        s = "n/a (r > 2)" if x["serial_fraction"] is None else f"{x['serial_fraction']:.2f}"
        worst = "" if x["projected_cores_worst_s"] is None else f"{x['projected_cores_worst_s']:,.0f}"
        lines.append(
            f"| {x['stage']} | {' / '.join(f'{v:,.1f}' for v in x['seconds'])} | {x['exponent']:.2f} | "
            f"{' / '.join(f'{v:,}' for v in x['peak_rss_mb'])} | {' / '.join(f'{v:,.0f}' for v in x['disk_mb'])} | "
            f"{x['projected_s']:,.0f} | {s} | {x['projected_cores_s']:,.0f} | {worst} |"
        )
    worst = "" if p["total_cores_worst_s"] is None else f"{p['total_cores_worst_s']:,.0f}"
    lines.append(
        f"| **all stages** | | | | | **{p['total_s']:,.0f}** ({p['total_s'] / 3600:.1f} h) | | "
        f"**{p['total_cores_s']:,.0f}** ({p['total_cores_s'] / 3600:.1f} h) | {worst} |"
    )
    lines.append(f"\nI/O floor: exponent {p['floor_exponent']:.2f}, projected {p['floor_s']:,.0f} s on 2 cores")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, nargs="+", help="bench/run.py results on all cores, two scales or more")
    ap.add_argument("--one-core", type=Path, help="a result at one of those scales with --cores 1")
    ap.add_argument("--to", type=float, default=1.0, help="the scale to project to (1.0: the full library)")
    ap.add_argument("--cores", type=int, default=16, help="the node to project to")
    args = ap.parse_args(argv)
    runs = [json.loads(p.read_text()) for p in args.results]
    if len({r["scale"] for r in runs}) < 2:
        ap.error("give results at two scales or more")
    if len({r["machine"]["cores_used"] for r in runs}) != 1:
        ap.error("the results ran on different numbers of cores")
    one = json.loads(args.one_core.read_text()) if args.one_core else None
    if one is not None and (one["machine"]["cores_used"] != 1 or one["scale"] not in {r["scale"] for r in runs}):
        ap.error("--one-core must be a --cores 1 run at one of the scales given")
    p = project(runs, one, args.to, args.cores)
    print(markdown(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())

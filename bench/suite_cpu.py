"""Where a command's CPU goes, by kind of process: run it (the test suite, a demo) while every process
on the machine is sampled once a second.

    .venv/bin/python bench/suite_cpu.py [--interval 1.0] [--json OUT] -- make test

On a machine with nothing else running, this says whether a slow command waits or computes, and
what computes: Spark's JVMs, the Python workers Spark starts, Airflow, the stages' own Python.
``time`` cannot say: it counts only the children a process reaps, and pyspark never reaps its JVM.

Each process's CPU time (user + system) is read from ``/proc/<pid>/stat``. A process is known by its
pid and start time, so a reused pid is a new process. One that started after sampling began counts
from zero; one already running counts from when it was first seen. Its kind comes from its latest
command line, so a shell script that ``exec``s a JVM counts as the JVM. A process that starts and
ends between two samples is missed: the report sets the sum against the machine's own CPU counter
(``/proc/stat``: user, nice and system time) over the same time, and the difference is shown as
"not attributed".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")

_KINDS: tuple[tuple[str, str], ...] = (  # (pattern in the command line, kind), first match wins
    (r"CoarseGrainedExecutorBackend", "Spark executor JVMs"),
    (r"deploy\.(master\.Master|worker\.Worker)", "Spark standalone master and worker"),
    # a local driver is named by its application (kcure-<stage>-<build>, kcure-build-<build>, kcure-tests...),
    # less the build or project it ran for, so the tests' own sessions stand apart from the builds
    (r"(^|/)java\s.*\bspark\.app\.name=(kcure-(class-archive|[a-z]+))", "Spark driver JVMs: {2}"),
    (r"(^|/)java\s", "Spark driver JVMs (and other JVMs)"),
    (r"pyspark\.(daemon|worker)", "Spark's Python workers"),
    (r"kcure\.core\.classdata", "kcure spark-archive"),
    (r"(kcure\.cli|bin/kcure)\s+(\S+)", "kcure {2}"),
    (r"jobs/(\w+)\.py", "jobs/{1}.py"),
    (r"(^|/)airflow\s+(\S+)", "airflow {2}"),
    (r"exec\(eval\(sys\.stdin\.readline\(\)\)\)|(^|/)pytest(\s|$)|-m pytest", "pytest and its workers' own Python"),
    (r"bench/(\w+)\.py", "bench/{1}.py"),
    (r"chrom", "Chromium"),
    (r"(^|/)(uv|pip)\s", "uv and pip"),
    (r"moto", "moto (the S3 endpoint)"),
)


def kind(cmdline: str) -> str:
    """The kind of process a command line names (``{N}``: the pattern's group N)."""
    for pattern, name in _KINDS:
        m = re.search(pattern, cmdline)
        if m:
            return re.sub(r"\{(\d)\}", lambda g, m=m: m.group(int(g.group(1))) or "", name)
    argv0 = cmdline.split(" ", 1)[0]
    return Path(argv0).name or "(no command line)"


class Tracker:
    """CPU seconds per process, from repeated samples of (pid, start, CPU seconds, command line)."""

    def __init__(self, began_ticks: int) -> None:
        self.began = began_ticks  # the machine's clock (ticks since boot) when sampling began
        self.procs: dict[tuple[int, int], dict[str, Any]] = {}

    def see(self, pid: int, start_ticks: int, cpu: float, cmdline: str) -> None:
        p = self.procs.get((pid, start_ticks))
        if p is None:
            base = 0.0 if start_ticks >= self.began else cpu  # already running: count from now
            p = self.procs[(pid, start_ticks)] = {"base": base, "cpu": cpu, "cmd": cmdline}
        p["cpu"] = cpu
        if cmdline:  # an exec'd process takes its new command line's kind; a zombie keeps its last
            p["cmd"] = cmdline

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in self.procs.values():
            k = kind(p["cmd"])
            out[k] = out.get(k, 0.0) + max(p["cpu"] - p["base"], 0.0)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _machine_cpu() -> tuple[float, int]:
    """CPU seconds the machine's processes used since boot (user, nice and system: what a process's
    utime and stime count; interrupts and steal are no process's), and its number of CPUs."""
    lines = Path("/proc/stat").read_text().splitlines()
    fields = lines[0].split()[1:]
    cpus = sum(1 for line in lines if re.match(r"cpu\d+ ", line))
    return sum(int(fields[i]) for i in (0, 1, 2)) / TICKS, cpus


def parse_stat(text: str) -> tuple[float, int]:
    """(CPU seconds: utime + stime, start time in clock ticks since boot) from a ``/proc/<pid>/stat``
    line. The command name, in parentheses, may itself hold spaces and parentheses."""
    rest = text[text.rindex(")") + 2 :].split()  # fields 3 on (1-based): state, ppid, ...
    return (int(rest[11]) + int(rest[12])) / TICKS, int(rest[19])  # fields 14, 15 and 22


def _uptime_ticks() -> int:
    return int(float(Path("/proc/uptime").read_text().split()[0]) * TICKS)


def _sample(tracker: Tracker) -> None:
    me = str(os.getpid())  # the sampler itself is not the command it runs (its own command line names it)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or entry.name == me:
            continue
        try:
            stat = Path(entry.path, "stat").read_bytes().decode(errors="replace")
            cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        cpu, start = parse_stat(stat)
        tracker.see(int(entry.name), start, cpu, cmdline.strip())


def run(cmd: list[str], interval: float) -> dict[str, Any]:
    tracker = Tracker(_uptime_ticks())
    (machine0, cpus), t0 = _machine_cpu(), time.monotonic()
    proc = subprocess.Popen(cmd)
    while proc.poll() is None:
        _sample(tracker)
        time.sleep(interval)
    _sample(tracker)
    wall, machine = time.monotonic() - t0, _machine_cpu()[0] - machine0
    kinds = tracker.by_kind()
    seen = sum(kinds.values())
    return {
        "command": cmd,
        "exit": proc.returncode,
        "wall_seconds": round(wall, 1),
        "cores": cpus,  # the machine's, as /proc/stat counts them (not this process's affinity)
        "machine_cpu_seconds": round(machine, 1),
        "seen_cpu_seconds": round(seen, 1),
        "by_kind": {k: round(v, 1) for k, v in kinds.items()},
    }


def table(r: dict[str, Any]) -> str:
    busy = r["machine_cpu_seconds"] / (r["wall_seconds"] * r["cores"]) if r["wall_seconds"] else 0.0
    lines = [
        f"{' '.join(r['command'])}: exit {r['exit']}, {r['wall_seconds']:,.1f} s, {r['cores']} cores; "
        f"the machine's CPU {r['machine_cpu_seconds']:,.1f} s ({busy:.0%} of its cores)",
        "",
        "| process kind | CPU s | share |",
        "|---|---:|---:|",
    ]
    total = max(r["machine_cpu_seconds"], r["seen_cpu_seconds"], 1e-9)
    missed = total - r["seen_cpu_seconds"]  # processes that lived less than a sample, and each one's last stretch
    rows = [*r["by_kind"].items(), ("not attributed (between samples)", missed)]
    lines += [f"| {k} | {v:,.1f} | {v / total:.1%} |" for k, v in rows if v >= 0.05]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = ap.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("give the command to run after --")
    r = run(cmd, args.interval)
    print(table(r))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    return int(r["exit"])


if __name__ == "__main__":
    sys.exit(main())

"""Stage-by-stage benchmark of the pipeline against the I/O floor.

    .venv/bin/python bench/run.py --scale 0.01 [--work DIR] [--reuse-landing]
    .venv/bin/python bench/run.py --scaling 0.005 0.01 0.02

Each stage runs as its own process, as an Airflow task would (``kcure ingest``,
``jobs/pseudonymize.py``, ``jobs/link.py``, ``jobs/protect.py``, ``jobs/check.py``, ``kcure publish``).
A sampler walks
the stage's process tree (the JVM included) every 0.2 s for the peak resident memory of all its
processes and their CPU seconds. Disk written is the growth of KCURE_HOME. The I/O floor is
``bench/io_floor.py`` in the same run: pyarrow reading the same landing files and writing
compressed Parquet, with the same two cores. Results go to ``bench/results/<timestamp>.json`` and
are printed as a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
K_CURE_PATIENTS = 2_260_000
SECRETS = {  # throwaway benchmark keys: synthetic data only
    "KCURE_LINKAGE_SECRET": "bench-only-linkage-secret-not-for-real-data-0001",
    "KCURE_LIBRARY_SECRET": "bench-only-library-secret-not-for-real-data-0002",
}
#: the benchmark project's key, throwaway too. A project's dates are shifted by its own key, and its
#: cohort is matched on the diagnosis year the extract shows, so a key made afresh in every run would
#: change who is matched (1,590, 1,592 and 1,605 people at 1% over one library) and with it the work
PROJECT_KEY = hashlib.sha256(b"bench-only-project-key-not-for-real-data-0003").hexdigest()


def du(path: Path) -> int:
    """Bytes of the files under ``path``, a hard-linked file once (protect links the tables it keeps)."""
    if not path.exists():
        return 0
    seen: dict[tuple[int, int], int] = {}
    # os.walk skips what vanishes under it (a stopping JVM still removing its temporary folders)
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            if not stat.S_ISLNK(st.st_mode):
                seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


def parquet_rows(path: Path, tables: list[str] | None = None) -> int:
    """Rows in the Parquet files under ``path`` (only under ``path/<table>`` for the given tables)."""
    import pyarrow.parquet as pq

    roots = [path / t for t in tables] if tables is not None else [path]
    return sum(
        pq.ParquetFile(f).metadata.num_rows for r in roots for f in r.rglob("*.parquet") if not f.name.startswith(".")
    )


#: above this resident size a process's memory is read as RSS, not PSS. PSS makes the kernel walk every
#: page of the process: 150 ms per read of a 5 GB JVM. Sampling every 0.2 s, that took about a third of
#: a core (19 CPU s a minute in the 5% run's link, part ten) from the stage being measured. A JVM's pages
#: are its own (PSS was 0.06% below RSS there); PSS matters for the forked Python workers, which share
#: theirs and stay small.
PSS_BELOW = 2**30


class Sampler:
    """Peak resident memory (summed over the process tree: PSS for a process below ``PSS_BELOW``, RSS
    above) and CPU seconds of a process and all its descendants, and the sampler's own CPU seconds."""

    def __init__(self, proc: subprocess.Popen[bytes], interval: float = 0.2) -> None:
        self.root = psutil.Process(proc.pid)
        self.interval = interval
        self.peak_rss = 0
        self.cpu: dict[int, float] = {}
        self.own_cpu = 0.0  # this thread's CPU seconds: what measuring took from the machine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            rss = 0
            for p in procs:
                try:
                    with p.oneshot():
                        m = p.memory_info().rss
                        # PSS: shared pages (forked Python workers, mapped jars) counted once
                        rss += m if m >= PSS_BELOW else (getattr(p.memory_full_info(), "pss", 0) or m)
                        t = p.cpu_times()  # own time only: reaped children are sampled themselves
                        self.cpu[p.pid] = t.user + t.system
                except psutil.Error:
                    continue
            self.peak_rss = max(self.peak_rss, rss)
            self.own_cpu = time.thread_time()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())


def run_stage(name: str, cmd: list[str], env: dict[str, str], home: Path, log: Path) -> dict[str, Any]:
    before = du(home)
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        sampler = Sampler(proc)
        rc = proc.wait()
        sampler.stop()
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"stage {name} failed (exit {rc}); log: {log}\n" + log.read_text()[-3000:])
    return {
        "stage": name,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(max(sampler.cpu_seconds, 0.0), 1),
        "peak_rss_mb": round(sampler.peak_rss / 2**20),
        "disk_written_mb": round(max(du(home) - before, 0) / 2**20, 1),
        "sampler_cpu_seconds": round(sampler.own_cpu, 1),
    }


SPARK_STAGES = ("pseudonymize", "link", "protect", "check")


def pipeline_steps(py: str, landing: Path, build: str, only: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """Each step of a run as its own process, as an Airflow task would run it: ingest (of ``only``, if
    given), the Spark stages' jobs, and publishing ``build`` as the release of the same name."""
    return [
        ("ingest", [py, "-m", "kcure.cli", "ingest", "--landing", str(landing), *(only or []), "--no-data-docs"]),
        *[(name, [py, str(REPO / "jobs" / f"{name}.py"), "--build", build]) for name in SPARK_STAGES],
        ("publish", [py, "-m", "kcure.cli", "publish", "--build", build, "--release", build, "--no-report"]),
    ]


def _rows_out(stage: str, home: Path, build: str, rows_in: int) -> int:
    """What a stage wrote: staged rows, pseudonymized rows, or the library tables' rows (not the lineage)."""
    from kcure.core.config import load_config

    library = list(load_config().library.tables)
    where = {
        "ingest": (home / "staging", None),
        "pseudonymize": (home / "pseudonymized" / build, None),
        "link": (home / "linked" / build, library),
        "protect": (home / "protected" / build, library),
        "check": (home / "protected" / build, library),
    }
    if stage not in where:
        return rows_in
    path, tables = where[stage]
    return parquet_rows(path, tables)


def _bench_conf(work: Path, events: Path) -> Path:
    """The repository's configuration, plus Spark event logs for the stage timings; Spark and ingestion
    use the cores this process may run on (``--cores``)."""
    import yaml

    conf = work / "conf"
    subprocess.run(["rm", "-rf", str(conf), str(events)], check=True)
    subprocess.run(["cp", "-r", str(REPO / "conf"), str(conf)], check=True)
    events.mkdir()
    pyaml = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    spark_conf = pyaml["defaults"]["spark"].setdefault("conf", {}) or {}
    spark_conf.update(
        {"spark.eventLog.enabled": "true", "spark.eventLog.dir": events.as_uri(), "spark.eventLog.compress": "false"}
    )
    pyaml["defaults"]["spark"]["conf"] = spark_conf
    cores = len(os.sched_getaffinity(0))
    if cores < (os.cpu_count() or cores):  # --cores: as many Spark threads and ingest workers as cores
        pyaml["defaults"]["spark"]["master"] = f"local[{cores}]"
        pyaml["defaults"]["ingest"]["workers"] = cores
    # the benchmark is one account: its own group stands in for the committee (as in `make demo`)
    pyaml["defaults"]["projects"].update({"committee_group": "@custodian", "reviewers_required": 1})
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pyaml, sort_keys=False), encoding="utf-8")
    return conf


BENCH_PROJECT = "kc20261130900"
REDELIVERY_BUILD = "bench-re"


def _bench_application(work: Path, sites: str) -> Path:
    """An all-tables extract of one site's cohort (default C16, ~13% of patients), month-level dates."""
    import yaml

    doc = {
        "project": BENCH_PROJECT, "title": "benchmark: an all-tables extract of one site", "purpose": "benchmark",
        "principal_investigator": "nobody", "analysts": ["nobody"], "pledges": {"nobody": "2026-01-02"},
        "irb": {"number": "BENCH-1", "approved": "2026-01-01"}, "release": "latest",
        "cohort": {"sites": sites.split(","), "years": [2012, 2020]},
        "tables": {t: {"columns": "all"} for t in ("RGST", "BFC", "G1E", "T200", "T300", "T400", "T530", "DEATH",
                                                    "COVID", "VCN")},
        "plans": {"drug_use": "benchmark"}, "date_precision": "month", "expires": "2099-12-31",
    }  # fmt: skip
    path = work / "bench-application.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def bench_provision(py: str, env: dict[str, str], work: Path, home: Path, logs: Path, sites: str) -> dict[str, Any]:
    """Provision the benchmark project (submitted and approved untimed, with an exception recorded so the
    extract is written whatever its gate says: the gate's figures are reported) and its own I/O floor."""
    kcure = [py, "-m", "kcure.cli", "project"]
    app = _bench_application(work, sites)
    keys = work / "project-keys"  # the project's key store, with the throwaway key in it: every run matches alike
    subprocess.run(["rm", "-rf", str(keys)], check=True)
    keys.mkdir(mode=0o700)
    fd = os.open(keys / f"{BENCH_PROJECT}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(PROJECT_KEY + "\n")
    env = {**env, "KCURE_PROJECT_KEYS": str(keys)}
    for cmd in (["submit", str(app)], ["review", BENCH_PROJECT, "--approve", "--note", "benchmark"],
                ["review", BENCH_PROJECT, "--exception", "--note", "benchmark: measure the write path"]):  # fmt: skip
        subprocess.run([*kcure, *cmd], env=env, cwd=REPO, check=True, capture_output=True)
    s = run_stage("provision", [*kcure, "provision", BENCH_PROJECT], env, home, logs / "provision.log")
    manifest = json.loads((home / "projects" / BENCH_PROJECT / "provisions" / "1" / "manifest.json").read_text())
    extract = home / "projects" / BENCH_PROJECT / "workspace" / "extract"
    floor_log = logs / "provision-floor.log"
    fl = run_stage("provision_floor", [py, str(REPO / "bench" / "provision_floor.py"), "bench", str(extract),
                                       str(work / "provision-floor")], env, work, floor_log)  # fmt: skip
    counts = json.loads(floor_log.read_text().strip().splitlines()[-1])
    s["rows_in"] = fl["rows_in"] = counts["rows_read"]
    s["rows_out"] = sum(int(t["rows"]) for t in manifest["tables"].values())
    fl["rows_out"] = counts["rows_written"]
    for x in (s, fl):
        x["rows_per_second"] = round(x["rows_in"] / x["seconds"]) if x["seconds"] else None
    s["x_floor"] = round(s["seconds"] / fl["seconds"], 2)
    s["floor"] = fl
    p = manifest["privacy"]
    s["cohort"] = p["cohort"]
    s["key"] = {"fingerprint": manifest["key_fingerprint"], "created": manifest["key_created"]}
    if manifest["key_created"]:
        raise SystemExit(f"provisioning made a new project key instead of using the benchmark's in {keys}")
    s["gate"] = {"passed": p["passed"], **{m: {k: v[k] for k in ("people", "average_risk", "share_unique")}
                                           for m, v in p["one_event"].items()}}  # fmt: skip
    return s


def bench(
    scale: float | None,
    patients: int | None,
    work: Path,
    seed: int,
    reuse: bool,
    sites: str = "C16",
    redeliver: str | None = None,
) -> dict[str, Any]:
    py = sys.executable
    n = patients if patients is not None else max(1, round(K_CURE_PATIENTS * float(scale or 0)))
    work.mkdir(parents=True, exist_ok=True)
    landing = work / "landing"
    home = work / "home"
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    env = {**os.environ, **SECRETS, "KCURE_HOME": str(home)}
    result: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": scale,
        "patients": n,
        "seed": seed,
        "machine": {
            "cores": psutil.cpu_count(),
            "cores_used": len(os.sched_getaffinity(0)),  # --cores: the stages and the floor run on these only
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": _versions(),
        "git_sha": _git_sha(),
    }
    # generation is timed apart from the pipeline
    if not (reuse and (landing / "_truth").exists()):
        g = run_stage(
            "generate",
            [py, "-m", "kcure.cli", "generate", "--patients", str(n), "--seed", str(seed), "--out", str(landing),
             "--force"],
            env, work, logs / "generate.log",
        )  # fmt: skip
        result["generate"] = g
    delivered = _delivered_rows(landing)
    result["landing"] = {"rows": delivered, "mb": round(du(landing) / 2**20, 1)}

    # the I/O floor, in the same run
    floor_dir = work / "floor"
    subprocess.run(["rm", "-rf", str(floor_dir)], check=True)
    floor = run_stage(
        "io_floor", [py, str(REPO / "bench" / "io_floor.py"), str(landing), str(floor_dir)], env, work, logs / "f.log"
    )
    floor["rows_in"] = floor["rows_out"] = delivered
    result["floor"] = floor

    subprocess.run(["rm", "-rf", str(home)], check=True)
    events = work / "spark-events"
    env["KCURE_CONF"] = str(_bench_conf(work, events))
    build = "bench"
    stages = pipeline_steps(py, landing, build)
    out: list[dict[str, Any]] = []
    for name, cmd in stages:
        s = run_stage(name, cmd, env, home, logs / f"{name}.log")
        s["rows_in"] = out[-1]["rows_out"] if out else delivered
        s["rows_out"] = _rows_out(name, home, build, s["rows_in"])
        if name == "check":
            g = json.loads((home / "reports" / "builds" / build / "check.json").read_text())
            if not g["success"]:
                raise SystemExit("the release gates failed in the benchmark: " + "; ".join(g["failures"]))
            s["phases"] = g.get("phases", {})
        out.append(s)
    for s in [*out, floor]:
        s["rows_per_second"] = round(s["rows_in"] / s["seconds"]) if s["seconds"] else None
        s["x_floor"] = round(s["seconds"] / floor["seconds"], 2)
    result["stages"] = out
    if redeliver:
        result["redelivery"] = bench_redelivery(py, env, landing, home, logs, redeliver, out)
    result["provision"] = bench_provision(py, env, work, home, logs, sites)
    result["spark_stages"], apps = spark_event_totals(events)
    attach_spark_tasks(result, apps, build)
    total = sum(s["seconds"] for s in out)
    result["pipeline"] = {
        "seconds": round(total, 2),
        "cpu_seconds": round(sum(s["cpu_seconds"] for s in out), 1),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in out),
        "disk_written_mb": round(sum(s["disk_written_mb"] for s in out), 1),
        "rows_in": delivered,
        "rows_per_second": round(delivered / total),
        "x_floor": round(total / floor["seconds"], 2),
        "sampler_cpu_seconds": round(sum(s["sampler_cpu_seconds"] for s in out), 1),
    }
    return result


def bench_redelivery(
    py: str, env: dict[str, str], landing: Path, home: Path, logs: Path, what: str, full: list[dict[str, Any]]
) -> dict[str, Any]:
    """A re-delivery of one feed-year (``FEED/YEAR``: its latest files sent again as a new delivery, so a
    new staged version) ingested and built again as release ``bench-re``, each step its own process.

    The build reuses every pseudonymized feed whose inputs did not change (the manifest's "reused"
    says which) and must release exactly the rows of the full build: every table is compared row
    for row with the first release, with the linkage report, privacy result, gates and row counts.
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_releases", REPO / "bench" / "compare_releases.py")
    assert spec is not None and spec.loader is not None
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    feed, year = what.split("/")
    src = landing / feed / year
    latest = max(p for p in src.iterdir() if (p / "_MANIFEST.json").exists())
    number = int(latest.name[1:]) + 1
    target = src / f"d{number:03d}"
    subprocess.run(["rm", "-rf", str(target)], check=True)
    subprocess.run(["cp", "-r", str(latest), str(target)], check=True)
    manifest = json.loads((target / "_MANIFEST.json").read_text(encoding="utf-8"))
    (target / "_MANIFEST.json").write_text(json.dumps({**manifest, "delivery": number}), encoding="utf-8")
    build = REDELIVERY_BUILD
    steps = pipeline_steps(py, landing, build, ["--feeds", feed, "--years", year])
    try:
        out = [run_stage(name, cmd, env, home, logs / f"redelivery-{name}.log") for name, cmd in steps]
    finally:
        subprocess.run(["rm", "-rf", str(target)], check=True)  # the landing stays as generated
    summaries = home / "reports" / "builds" / build
    pseudo = json.loads((summaries / "pseudonymize.json").read_text(encoding="utf-8"))
    link = json.loads((summaries / "link.json").read_text(encoding="utf-8"))
    protect = json.loads((summaries / "protect.json").read_text(encoding="utf-8"))
    gates = json.loads((summaries / "check.json").read_text(encoding="utf-8"))
    seconds = sum(s["seconds"] for s in out)
    full_seconds = sum(s["seconds"] for s in full)
    build_only = sum(s["seconds"] for s in out if s["stage"] != "ingest")
    full_build = sum(s["seconds"] for s in full if s["stage"] != "ingest")
    return {
        "feed_year": what,
        "steps": out,
        "seconds": round(seconds, 2),
        "x_full": round(seconds / full_seconds, 3),
        "build_x_full_build": round(build_only / full_build, 3),
        "reused": pseudo.get("reused") or {},
        "reused_link": link.get("reused") or {},
        "reused_protect": protect.get("reused") or {},
        "suites_reused": {t: x["passed_in"] for t, x in (gates.get("suites") or {}).items() if "passed_in" in x},
        "compared": compare.compare_releases(home, "bench", home, build),
    }


#: per task, summed per application (one stage process): the Task Metrics fields, and their unit in seconds or MB
TASK_METRICS = {
    "cpu_seconds": (("Executor CPU Time",), 1e-9),
    "run_seconds": (("Executor Run Time",), 1e-3),
    "gc_seconds": (("JVM GC Time",), 1e-3),
    "fetch_wait_seconds": (("Shuffle Read Metrics", "Fetch Wait Time"), 1e-3),
    "input_mb": (("Input Metrics", "Bytes Read"), 2**-20),
    "shuffle_write_mb": (("Shuffle Write Metrics", "Shuffle Bytes Written"), 2**-20),
    "spill_mb": (("Disk Bytes Spilled",), 2**-20),
    "output_mb": (("Output Metrics", "Bytes Written"), 2**-20),
}


def _metric(metrics: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = metrics
    for key in path:
        value = value.get(key, 0) if isinstance(value, dict) else 0
    return float(value or 0)


def _event_logs(events: Path) -> Iterator[list[Path]]:
    """Each application's event log as its files, in order: a plain log is one file in ``events``; a
    rolling (v2) log is a folder of ``events_<N>_<app id>`` files, in the order of N (``events_10``
    after ``events_2``). Status markers, checksums and other files are not read."""

    def number(p: Path) -> int:
        parts = p.name.split("_")
        return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0

    for entry in sorted(events.iterdir()):
        if not entry.name.startswith((".", "appstatus")):
            yield sorted(entry.glob("events_*"), key=number) if entry.is_dir() else [entry]


def spark_event_totals(events: Path, top: int = 10) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Where the Spark time goes, from the jobs' event logs, read once:

    * the ``top`` slowest kinds of work: wall time per job description (the jobs name their work with
      setJobDescription, for example 'link: hira_t300 -> T300'), with their tasks' CPU and run time;
    * per application (one process: ``kcure-<stage>-<build>``, ``kcure-provision-<project>``): its
      tasks' CPU, run, GC and shuffle-fetch wait time, and the bytes they read, shuffled, spilled and
      wrote.

    A task's run time less its CPU time is time its thread was not on a CPU: file and spill I/O,
    shuffle fetches, GC pauses, lock waits, or a busy machine (the old PSS sampler raised link's share
    at 5% from 13% to 41%). A slower CPU shows as more CPU seconds, not here; the bytes say whether
    the work was the same. Jobs can overlap (adaptive execution submits the two sides of a join at
    once), so summed job wall time can exceed the stage's.
    """
    totals = _EventTotals()
    for files in _event_logs(events):
        totals.next_log()
        for log in files:  # streamed line by line: a 5% stage's log runs to hundreds of MB
            with log.open(encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    try:
                        ev = json.loads(line)
                    except json.JSONDecodeError:  # a line cut short by the job's end
                        continue
                    totals.add(ev)
    slowest = sorted((e for e in totals.work.values() if e["jobs"]), key=lambda e: -e["seconds"])[:top]
    for e in slowest:
        for k in ("seconds", "task_cpu_seconds", "task_run_seconds"):
            e[k] = round(e[k], 1)
    for a in totals.apps.values():
        a["off_cpu_share"] = round(1 - a["cpu_seconds"] / a["run_seconds"], 3) if a["run_seconds"] else None
        for k in TASK_METRICS:
            a[k] = round(a[k], 3)  # a small step writes kilobytes
    return slowest, totals.apps


def attach_spark_tasks(result: dict[str, Any], apps: dict[str, dict[str, Any]], build: str) -> None:
    """Give each Spark step of ``result`` the task sums of its own application: a stage of the full build
    is ``kcure-<stage>-<build>``, of the re-delivery ``kcure-<stage>-bench-re``, provisioning
    ``kcure-provision-<project>``. A step that ran no Spark (ingest, publish) gets none."""
    steps = [(s, build) for s in result.get("stages", [])]
    steps += [(s, REDELIVERY_BUILD) for s in result.get("redelivery", {}).get("steps", [])]
    for s, b in steps:
        if f"kcure-{s['stage']}-{b}" in apps:
            s["spark_tasks"] = apps[f"kcure-{s['stage']}-{b}"]
    if "provision" in result and f"kcure-provision-{BENCH_PROJECT}" in apps:
        result["provision"]["spark_tasks"] = apps[f"kcure-provision-{BENCH_PROJECT}"]


class _EventTotals:
    """Sums over every log, one log (one application's run) at a time; ``app`` comes from its start event.

    A plain class: bench/project.py loads this file without registering it as a module, which a
    dataclass's annotations need."""

    def __init__(self) -> None:
        self.app = "?"
        self.work: dict[tuple[str, str], dict[str, Any]] = {}  # (app, job description) -> sums
        self.apps: dict[str, dict[str, Any]] = {}  # app -> its tasks' sums
        self.started: dict[int, tuple[str, int]] = {}  # this log's job -> description, start
        self.work_of: dict[int, str] = {}  # this log's stage -> its job's description

    def next_log(self) -> None:
        self.app = "?"
        self.started.clear()
        self.work_of.clear()

    def add(self, ev: dict[str, Any]) -> None:
        kind = ev.get("Event")
        if kind == "SparkListenerApplicationStart":
            self.app = ev.get("App Name", "?")
        elif kind == "SparkListenerJobStart":
            desc = (ev.get("Properties") or {}).get("spark.job.description") or "(unnamed)"
            self.started[ev["Job ID"]] = (desc, ev["Submission Time"])
            # a later job lists the stages it reuses (skipped): the first job that lists a stage runs it
            for stage in ev.get("Stage IDs", []):
                self.work_of.setdefault(stage, desc)
        elif kind == "SparkListenerJobEnd" and ev.get("Job ID") in self.started:
            desc, t0 = self.started.pop(ev["Job ID"])
            entry = self._entry(desc)
            entry["jobs"] += 1
            entry["seconds"] += (ev["Completion Time"] - t0) / 1000
        elif kind == "SparkListenerTaskEnd":
            metrics = ev.get("Task Metrics") or {}
            task = {name: _metric(metrics, path) * unit for name, (path, unit) in TASK_METRICS.items()}
            per_app = self.apps.setdefault(self.app, {"tasks": 0, **dict.fromkeys(TASK_METRICS, 0.0)})
            per_app["tasks"] += 1
            for name, value in task.items():
                per_app[name] += value
            entry = self._entry(self.work_of.get(ev.get("Stage ID", -1), "(unnamed)"))
            entry["task_cpu_seconds"] += task["cpu_seconds"]
            entry["task_run_seconds"] += task["run_seconds"]

    def _entry(self, desc: str) -> dict[str, Any]:
        zero = {"jobs": 0, "seconds": 0.0, "task_cpu_seconds": 0.0, "task_run_seconds": 0.0}
        return self.work.setdefault((self.app, desc), {"app": self.app, "work": desc, **zero})


def _delivered_rows(landing: Path) -> int:
    from kcure.core.deliveries import Manifest

    rows = 0
    for mpath in sorted(landing.glob("*/*/d*/_MANIFEST.json")):
        latest = max(p.name for p in mpath.parent.parent.iterdir() if (p / "_MANIFEST.json").exists())
        if mpath.parent.name == latest:
            rows += sum(f.rows for f in Manifest.from_json(mpath.read_text(encoding="utf-8")).files)
    return rows


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ("apache-airflow", "pyspark", "great-expectations", "pyarrow", "pyiceberg", "duckdb", "pandas")
    return {n: version(n) for n in names}


def _git_sha() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cores(machine: dict[str, Any]) -> str:
    used = machine.get("cores_used", machine["cores"])
    return f"{machine['cores']} cores" if used == machine["cores"] else f"{used} of {machine['cores']} cores"


def markdown(r: dict[str, Any]) -> str:
    head = (
        f"scale {r['scale']} ({r['patients']:,} patients), {r['landing']['rows']:,} delivered rows, "
        f"{_cores(r['machine'])} / {r['machine']['memory_gb']} GB, git {r['git_sha'][:10]}"
    )
    lines = [
        head,
        "",
        "| stage | rows in | rows out | wall s | rows/s | CPU s | peak mem MB | disk MB | × floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in [*r["stages"], {**r["pipeline"], "stage": "**pipeline**", "rows_out": r["stages"][-1]["rows_out"]}]:
        lines.append(
            f"| {s['stage']} | {s['rows_in']:,} | {s['rows_out']:,} | {s['seconds']:,.1f} | "
            f"{s['rows_per_second']:,} | {s['cpu_seconds']:,.1f} | {s['peak_rss_mb']:,} | "
            f"{s['disk_written_mb']:,} | {s['x_floor']:.2f} |"
        )
    f = r["floor"]
    lines.append(
        f"| I/O floor | {f['rows_in']:,} | {f['rows_out']:,} | {f['seconds']:,.1f} | {f['rows_per_second']:,} | "
        f"{f['cpu_seconds']:,.1f} | {f['peak_rss_mb']:,} | {f['disk_written_mb']:,} | 1.00 |"
    )
    lines.append(
        f"\npeak memory: PSS of each process below {PSS_BELOW // 2**20:,} MB, RSS above; measuring took "
        f"{r['pipeline']['sampler_cpu_seconds']:,.1f} CPU s"
    )
    spark = [s for s in r["stages"] if s.get("spark_tasks")]
    spark += [{**s, "stage": f"re-delivery {s['stage']}"} for s in (r.get("redelivery") or {}).get("steps", [])]
    spark += [{**r["provision"], "stage": "provision"}] if r.get("provision") else []
    lines += spark_tasks_table([s for s in spark if s.get("spark_tasks")])
    if r.get("provision"):
        v = r["provision"]
        pf = v["floor"]
        lines += [
            "",
            f"provisioning: an all-tables extract of {v['cohort']['kept']:,} people "
            f"(of {v['cohort']['matched']:,} matched); gate {'passed' if v['gate']['passed'] else 'failed'}",
            "",
            "| step | rows read | rows written | wall s | rows/s | CPU s | peak mem MB | disk MB | × floor |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| provision | {v['rows_in']:,} | {v['rows_out']:,} | {v['seconds']:,.1f} | {v['rows_per_second']:,} | "
            f"{v['cpu_seconds']:,.1f} | {v['peak_rss_mb']:,} | {v['disk_written_mb']:,} | {v['x_floor']:.2f} |",
            f"| provisioning I/O floor | {pf['rows_in']:,} | {pf['rows_out']:,} | {pf['seconds']:,.1f} | "
            f"{pf['rows_per_second']:,} | {pf['cpu_seconds']:,.1f} | {pf['peak_rss_mb']:,} | "
            f"{pf['disk_written_mb']:,} | 1.00 |",
        ]
    if r.get("redelivery"):
        v = r["redelivery"]
        c = v["compared"]
        lines += [
            "",
            f"re-delivery of {v['feed_year']} (release bench-re; pseudonymized feeds reused from the full build: "
            f"{len(v['reused'])}, {', '.join(sorted(v['reused'])) or 'none'}; linked feeds reused: "
            f"{len(v.get('reused_link', {}))}; protected tables reused: {len(v.get('reused_protect', {}))}; "
            f"table suites not run again: {len(v.get('suites_reused', {}))}):",
            "",
            "| step | wall s | CPU s | peak mem MB | disk MB |",
            "|---|---:|---:|---:|---:|",
            *[
                f"| {s['stage']} | {s['seconds']:,.1f} | {s['cpu_seconds']:,.1f} | {s['peak_rss_mb']:,} | "
                f"{s['disk_written_mb']:,} |"
                for s in v["steps"]
            ],
            f"| **re-delivery** | {v['seconds']:,.1f} | | | |",
            "",
            f"{v['x_full']:.0%} of the full run's time (build stages alone: {v['build_x_full_build']:.0%}); "
            f"released rows {'identical' if c['equal'] else 'DIFFERENT'} to the full build's "
            f"({sum(int(t.get('rows', 0)) for t in c['tables'].values()):,} rows compared).",
        ]
    if r.get("spark_stages"):
        lines.append("\nwhere the Spark time goes (event logs, summed job wall time):")
        for st in r["spark_stages"]:
            tasks = (
                f"; its tasks {st['task_cpu_seconds']:,.1f} CPU s in {st['task_run_seconds']:,.1f} s of run time"
                if "task_run_seconds" in st  # results from before the tasks were summed have job times only
                else ""
            )
            lines.append(f"- {st['app']}: {st['work']} ({st['jobs']} jobs) {st['seconds']:,.1f} s{tasks}")
    if "generate" in r:
        g = r["generate"]
        lines.append(f"\ngenerate (not in the pipeline): {g['seconds']:,.1f} s, peak {g['peak_rss_mb']:,} MB")
    return "\n".join(lines)


def spark_tasks_table(stages: list[dict[str, Any]]) -> list[str]:
    """What each Spark step's tasks did, summed over its event log. Off CPU is the share of their run
    time their threads spent off a CPU (I/O, shuffle fetches, GC pauses, waits, a busy machine)."""
    if not stages:
        return []
    lines = [
        "",
        "| Spark tasks | tasks | CPU s | run s | off CPU | GC s | fetch wait s | input MB | shuffle MB | spill MB "
        "| output MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stages:
        t = s["spark_tasks"]
        off = "" if t["off_cpu_share"] is None else f"{t['off_cpu_share']:.0%}"
        lines.append(
            f"| {s['stage']} | {t['tasks']:,} | {t['cpu_seconds']:,.1f} | {t['run_seconds']:,.1f} | {off} | "
            f"{t['gc_seconds']:,.1f} | {t['fetch_wait_seconds']:,.1f} | {t['input_mb']:,.0f} | "
            f"{t['shuffle_write_mb']:,.0f} | {t['spill_mb']:,.0f} | {t['output_mb']:,.0f} |"
        )
    return lines


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) on log(x): y ~ x^b."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def scaling(results: list[dict[str, Any]]) -> str:
    xs = [float(r["patients"]) for r in results]
    secs = [r["pipeline"]["seconds"] for r in results]
    mem = [float(r["pipeline"]["peak_rss_mb"]) for r in results]
    lines = [
        "| scale | patients | rows | pipeline s | peak mem MB | × floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        p = r["pipeline"]
        lines.append(
            f"| {r['scale']} | {r['patients']:,} | {p['rows_in']:,} | {p['seconds']:,.1f} | "
            f"{p['peak_rss_mb']:,} | {p['x_floor']:.2f} |"
        )
    b_t, b_m = fit_exponent(xs, secs), fit_exponent(xs, mem)
    steps = [secs[i + 1] / secs[i] for i in range(len(secs) - 1)]
    lines.append(
        f"\ntime ~ size^{b_t:.2f}; each doubling cost {', '.join(f'{s:.2f}x' for s in steps)} "
        f"(target <= 2.2x); peak memory ~ size^{b_m:.2f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = ap.add_mutually_exclusive_group(required=True)
    size.add_argument("--scale", type=float, help="fraction of K-CURE's 2.26 million patients")
    size.add_argument("--patients", type=int, help="an exact number of patients (the smoke run)")
    size.add_argument("--scaling", type=float, nargs="+", metavar="SCALE", help="several scales, each its own run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, help="scratch folder (default: var/bench/<scale>)")
    ap.add_argument("--reuse-landing", action="store_true", help="keep an already generated population")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the JSON results go")
    ap.add_argument(
        "--cores", type=int, help="run every stage and the I/O floor on this many cores only (default: all)"
    )
    ap.add_argument("--provision-sites", default="C16", help="the benchmark project's cohort sites (comma-separated)")
    ap.add_argument(
        "--redeliver",
        default="hira_t200/2016",
        metavar="FEED/YEAR",
        help="after the full build, re-deliver this feed-year and build again (empty: skip)",
    )
    args = ap.parse_args(argv)
    if args.cores:  # inherited by every stage's process and the floor's
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    scales: list[float | None] = list(args.scaling) if args.scaling else [args.scale]
    runs = []
    for scale in scales:
        label = (f"p{args.patients}" if args.patients else f"s{scale}") + (f"-c{args.cores}" if args.cores else "")
        work = args.work or REPO / "var" / "bench" / label
        if args.scaling and args.work:
            work = args.work / label
        work = work.resolve()  # the stages run elsewhere, and KCURE_PROJECT_KEYS must not be read against KCURE_HOME
        r = bench(scale, args.patients, work, args.seed, args.reuse_landing, args.provision_sites, args.redeliver)
        args.results.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = args.results / f"{stamp}-{label}.json"
        r["markdown"] = markdown(r)
        path.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
        print(r["markdown"])
        print(f"results: {path}\n")
        runs.append(r)
    if len(runs) > 1:
        text = scaling(runs)
        print(text)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        (args.results / f"{stamp}-scaling.json").write_text(
            json.dumps({"runs": [r["scale"] for r in runs], "markdown": text}, indent=2) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

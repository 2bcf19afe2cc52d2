"""The stage model: one registry of a build's stages, and the only code that plans and runs them.

    staging ─pseudonymize─▶ pseudonymized ─link─▶ linked ─protect─▶ protected ─check─▶ gate result
            ─publish─▶ release (Iceberg) ─report─▶ HTML report

``kcure build`` / ``kcure publish``, the ``kcure_build_library`` DAG and the spark-submit entry
points in ``jobs/`` all call :func:`plan` and :func:`run_stage`; none of them orders stages,
checks "already published" or hands out secrets on its own. (Ingest, landing → staging, works per
feed-year, not per build: ``kcure ingest`` and the ``kcure_ingest`` DAG run it.)

Each :class:`Stage` says what it reads and writes, the folders of a build it alone owns, the secrets
it may see and the stage whose output it needs. :func:`run_stage` refuses to touch a published
build, checks that the stage's input is complete, forgets the summaries of this and every later
stage, clears the folders the stage owns, and runs the body: in this process, or with spark-submit
when ``spark.master`` is a cluster (the child runs this same function). The summary,
``reports/builds/<build>/<stage>.json``, is written last, so a stage killed halfway leaves no
summary and the next stage refuses to start.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.core import secrets as secret_store
from kcure.core.config import Config, load_config
from kcure.core.zones import LINKAGE_QUALITY, BuildZones, clear, private_umask, read_json, write_json_atomic

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from kcure.core.secrets import Secret

BUILD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class StageFailed(RuntimeError):
    """A stage cannot run or ended without its result; the message says which and what to do."""


def check_id(value: str, what: str = "build id") -> str:
    """Build ids and release tags name folders and Iceberg tags: letters, digits, '.', '_', '-'."""
    if not BUILD_ID.fullmatch(value or ""):
        shown = value if len(value or "") <= 80 else value[:80] + "…"
        raise ValueError(f"{what} {shown!r} must be 1-64 letters, digits, '.', '_' or '-', starting alphanumeric")
    return value


@dataclass(frozen=True)
class Plan:
    """One build: its id, the release tag it is published as (if any), and the stages to run."""

    build: str
    release: str | None
    stages: tuple[str, ...]
    truth: str | None = None  # a synthetic population's _truth/: link also measures precision and recall

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stages": list(self.stages)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(d["build"], d.get("release") or None, tuple(d["stages"]), d.get("truth") or None)


@dataclass
class Run:
    """What a stage body is given: nothing else reaches it."""

    cfg: Config
    plan: Plan
    zones: BuildZones
    spark: Any  # a SparkSession for Spark stages, else None
    secrets: dict[str, Secret] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    name: str
    reads: tuple[str, ...]  # zones
    writes: tuple[str, ...]  # zones
    owns: tuple[str, ...]  # this build's folders only this stage writes (BuildZones attributes): cleared first
    secrets: tuple[str, ...]  # the only secrets the stage is given (pseudonymize alone gets the linkage secret)
    spark: bool  # runs on Spark: in this process in local mode, with spark-submit on a cluster
    needs: str | None  # the stage whose completed output it reads
    body: Callable[[Run], dict[str, Any]]
    on_failure: str  # what an operator should do when it fails (alerts)
    preload: tuple[str, ...] = ()  # slow imports of the body, made while the Spark session starts


# --- the stages' bodies: each calls its stage module with explicit inputs and outputs ---------------


def _pseudonymize(run: Run) -> dict[str, Any]:
    from kcure.core.staging import staged_inputs
    from kcure.stages import pseudonymize

    inputs = staged_inputs(run.cfg)  # what this build reads: the manifest records it, not staging at publish time
    r = pseudonymize.run(run.spark, run.cfg, run.secrets, run.zones.pseudonymized)
    return {"feeds": r.feeds, "missing": r.missing, "reused": r.reused, "out": str(r.out), "inputs": inputs}


def _link(run: Run) -> dict[str, Any]:
    from kcure.stages.link import linker, truth

    r = linker.run(run.spark, run.cfg, run.secrets["library"], run.zones.pseudonymized, run.zones.linked)
    out: dict[str, Any] = {
        "out": str(r.out),
        "tables": r.tables,
        "empty": r.empty,
        "reused": r.reused,
        "report": r.report,
        "staged_rows": sum(int(x["staged"]) for x in r.report),
    }
    if run.plan.truth:
        out["quality"] = truth.evaluate(run.spark, r.out, Path(run.plan.truth))
        write_json_atomic(r.out / LINKAGE_QUALITY, out["quality"], sort_keys=False)
    return out


def _protect(run: Run) -> dict[str, Any]:
    from kcure.stages.protect import recode

    privacy = recode.run(run.spark, run.cfg, run.zones.linked, run.zones.protected)
    reused = privacy.pop("reused", {})
    return {"out": str(run.zones.protected), "success": privacy["success"], "privacy": privacy, "reused": reused}


def _check(run: Run) -> dict[str, Any]:
    from kcure.stages import check

    z = run.zones
    report = check.run(run.spark, run.cfg, z.linked, z.protected, z.data_docs, z.summaries)
    # the gate report's own "seconds" (per phase) is kept as "phases": "seconds" is the stage's wall time
    return {**report.to_dict(), "phases": dict(report.seconds), "failures": [c.message() for c in report.failures]}


def _publish(run: Run) -> dict[str, Any]:
    """Publish the build if, and only if, its check stage passed: the one place a release is refused."""
    from kcure.stages import publish

    tag = run.plan.release
    if not tag:
        raise StageFailed(f"build {run.plan.build}: no release tag to publish it as")
    gates = read_json(run.zones.summary("check")) or {}
    if not gates.get("success"):
        raise StageFailed(
            f"release gates failed for build {run.plan.build}; release {tag} was NOT published:\n"
            + "\n".join(gates.get("failures") or [])
        )
    r = publish.publish(run.cfg, run.plan.build, tag, publish.manifest_for(run.cfg, run.plan.build))
    return {
        "release": r.tag,
        "build": r.build,
        "published_at": r.created_at.isoformat(),
        "row_counts": r.manifest["row_counts"],
        "empty_tables": r.manifest.get("empty_tables") or {},
    }


def _report(run: Run) -> dict[str, Any]:
    from kcure.access.report import render

    return {"release": run.plan.release, "report": str(render(run.cfg, run.plan.release))}


STAGES = (
    Stage(
        "pseudonymize", ("staging",), ("pseudonymized",), ("pseudonymized",), ("linkage", "library"), True, None,
        _pseudonymize,
        "A missing or short secret (KCURE_LINKAGE_SECRET / KCURE_LIBRARY_SECRET or the Airflow connections "
        "kcure_linkage_secret / kcure_library_secret) fails here without retrying. Otherwise see the Spark log; "
        "staging is untouched and a re-run starts the stage again.",
    ),
    Stage(
        "link", ("pseudonymized",), ("linked",), ("linked",), ("library",), True, "pseudonymize", _link,
        "See the Spark log; pseudonymized/<build> is intact, so clearing this task re-runs only the link.",
    ),
    Stage(
        "protect", ("linked",), ("protected",), ("protected",), (), True, "link", _protect,
        "See the Spark log; linked/<build> is intact, so clearing this task re-runs only the recoding.",
    ),
    Stage(
        "check", ("protected", "linked", "staging"), ("reports",), ("data_docs",), (), True, "protect", _check,
        "The check step itself crashed (a failed gate does not fail it, it stops publish). See the Spark log.",
        ("great_expectations",),
    ),
    Stage(
        "publish", ("protected", "reports"), ("warehouse", "catalog"), (), (), False, "check", _publish,
        "Gates failed (the message lists the table, check and a few pseudonymous keys) or the catalog was "
        "unreachable. Nothing was published and the previous release stays current; fix the data or the rule "
        "and trigger a new build.",
    ),
    Stage(
        "report", ("warehouse",), ("reports",), (), (), False, "publish", _report,
        "The release is published; only its HTML report failed. Re-run with `kcure report --release TAG`.",
    ),
)  # fmt: skip
STAGE = {s.name: s for s in STAGES}
NAMES = tuple(STAGE)


# --- planning ---------------------------------------------------------------------------------------


def _published(cfg: Config) -> list[Any]:
    from kcure.core.catalog import list_releases, open_catalog

    return list_releases(open_catalog(cfg))


def plan(
    cfg: Config,
    build: str | None = None,
    release: str | None = None,
    *,
    truth: str | None = None,
    start: str | None = None,
    stop: str | None = None,
) -> Plan:
    """The stages from ``start`` to ``stop`` (default: all, through ``check`` without a release tag).

    Refuses a build that is already published (its files are a release's, immutable) and a tag
    that is taken; publishing the same build as the same tag again is allowed and changes nothing.
    """
    private_umask()
    build = check_id(build) if build else datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    if release is not None:
        check_id(release, "release tag")
    for name in (start, stop):
        if name is not None and name not in STAGE:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(NAMES)}")
    first = NAMES.index(start or NAMES[0])
    last = NAMES.index(stop or ("report" if release else "check"))
    stages = NAMES[first : last + 1]
    if not stages:
        raise ValueError(f"no stage between {start} and {stop}")
    if not release and {"publish", "report"} & set(stages):
        raise ValueError("publishing needs a release tag")
    for r in _published(cfg):
        if r.tag == release and r.build != build:
            raise StageFailed(f"release {release} is already published from build {r.build}: choose a new tag")
        if r.build == build and (r.tag != release or first < NAMES.index("publish")):
            raise StageFailed(
                f"build {build} is published as release {r.tag}; its outputs are immutable. Choose a new build id."
            )
    return Plan(build, release, stages, truth)


# --- running ----------------------------------------------------------------------------------------


def load_secrets(cfg: Config, stage: Stage) -> dict[str, Secret]:
    """The stage's own secrets, checked (present, long enough) before any data is touched."""
    return {kind: secret_store.load(kind, min_bytes=cfg.privacy.min_secret_bytes) for kind in stage.secrets}


def run_stage(
    cfg: Config, plan_: Plan, name: str, *, spark: SparkSession | None = None, here: bool = False
) -> dict[str, Any]:
    """Run one stage of a planned build and return its summary. ``here``: never spark-submit."""
    from kcure import cluster

    private_umask()  # what a stage writes is its owner's alone; publish and report share the release
    stage = STAGE[name]
    zones = BuildZones(cfg, check_id(plan_.build))
    keys = load_secrets(cfg, stage)
    if stage.needs and not zones.summary(stage.needs).exists():
        raise StageFailed(
            f"{name} of build {plan_.build} needs the output of {stage.needs}, which has not completed: "
            f"run it first (kcure build --build {plan_.build} --from {stage.needs})"
        )
    submit = stage.spark and not here and cluster.is_cluster(cfg)
    if stage.spark and spark is None and not submit:
        from kcure.core.spark import active_session

        spark = active_session()  # this process's running session: used, never stopped here
    own = _guarded_start(cfg, plan_, stage, start_spark=stage.spark and spark is None and not submit)
    try:
        for later in NAMES[NAMES.index(name) :]:  # this run replaces what the stage, and all after it, made
            zones.summary(later).unlink(missing_ok=True)
        for folder in stage.owns:
            clear(getattr(zones, folder))
        if submit:
            return _submit(cfg, plan_, name, keys, zones)
        return _execute(Run(cfg, plan_, zones, own or spark, keys), stage)
    finally:
        if own is not None:
            own.stop()


def _guarded_start(cfg: Config, plan_: Plan, stage: Stage, *, start_spark: bool) -> SparkSession | None:
    """Refuse a published build; with ``start_spark``, the stage's own session, whose JVM starts while
    another thread asks the catalog (each takes seconds). Nothing is read or cleared before both end."""
    from concurrent.futures import ThreadPoolExecutor

    own = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kcure-guard") as pool:
        published = pool.submit(_published, cfg) if stage.owns else None
        try:
            if start_spark:
                from kcure.core.spark import build_session, staged_mb

                app = f"kcure-{stage.name}-{plan_.build}"
                own = build_session(cfg.spark, app_name=app, preload=stage.preload, input_mb=staged_mb(cfg))
            if published is not None and any(r.build == plan_.build for r in published.result()):
                raise StageFailed(
                    f"build {plan_.build} is published; its outputs are immutable. Choose a new build id."
                )
        except BaseException:
            if own is not None:
                own.stop()
            raise
    return own


def _submit(cfg: Config, plan_: Plan, name: str, keys: dict[str, Secret], zones: BuildZones) -> dict[str, Any]:
    """The stage as a spark-submit job on the cluster; its summary is the one the job wrote."""
    from kcure import cluster

    log = zones.summary(name).with_suffix(".log")
    code = cluster.submit(cfg, name, _job_args(plan_), keys, log)
    if code != 0:  # the log may quote Spark errors: point to it (owner-only), never copy it
        raise StageFailed(f"{name} of build {plan_.build} failed on {cfg.spark['master']} (exit {code}); see {log}")
    summary = read_json(zones.summary(name))
    if summary is None:
        raise StageFailed(f"{name} of build {plan_.build} left no summary at {zones.summary(name)}")
    return dict(summary)


def _execute(run: Run, stage: Stage) -> dict[str, Any]:
    t0 = time.perf_counter()
    summary = stage.body(run)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    if stage.spark:
        summary["master"] = run.spark.sparkContext.master
    write_json_atomic(run.zones.summary(stage.name), summary, sort_keys=False)
    return summary


def run_plan(
    cfg: Config,
    plan_: Plan,
    *,
    spark: SparkSession | None = None,
    on_stage: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every stage of the plan in order; in local mode the Spark stages share one session (``spark``,
    or one made for the build and stopped after it)."""
    from kcure import cluster

    for name in plan_.stages:  # refuse before any data is touched
        load_secrets(cfg, STAGE[name])
    own = None
    summaries: dict[str, dict[str, Any]] = {}
    try:
        for name in plan_.stages:
            if STAGE[name].spark and spark is None and not cluster.is_cluster(cfg):
                from kcure.core.spark import active_session, build_session, staged_mb

                spark = active_session()  # this process's running session: used, never stopped here
                if spark is None:
                    preload = tuple(m for n in plan_.stages for m in STAGE[n].preload)
                    app = f"kcure-build-{plan_.build}"
                    spark = own = build_session(cfg.spark, app_name=app, preload=preload, input_mb=staged_mb(cfg))
            summaries[name] = run_stage(cfg, plan_, name, spark=spark)
            if on_stage is not None:
                on_stage(name, summaries[name])
    finally:
        if own is not None:
            own.stop()
    return summaries


# --- jobs/<stage>.py under spark-submit -------------------------------------------------------------


def _job_args(plan_: Plan) -> list[str]:
    args = ["--build", plan_.build]
    if plan_.release:
        args += ["--release", plan_.release]
    if plan_.truth:
        args += ["--truth", plan_.truth]
    return args


def job_main(stage: str, argv: list[str] | None = None) -> int:
    """The entry point of ``jobs/<stage>.py`` (under spark-submit, or ``python jobs/<stage>.py``)."""
    ap = argparse.ArgumentParser(prog=f"jobs/{stage}.py", description=f"the {stage} stage of a library build")
    ap.add_argument("--build", required=True, help="build id, for example 2024.1")
    ap.add_argument("--release", help="the release tag of the build, if it has one")
    ap.add_argument("--truth", help="a synthetic population's _truth/ folder (link: adds precision and recall)")
    args = ap.parse_args(argv)
    run_stage(load_config(), Plan(args.build, args.release, (stage,), args.truth), stage, here=True)
    return 0


# --- housekeeping -----------------------------------------------------------------------------------


def purge_builds(cfg: Config, days: float, now: float | None = None) -> list[Path]:
    """Delete the build zones of builds whose last stage ran more than ``days`` ago.

    pseudonymized/ and linked/ go for every such build; protected/ and the stage summaries only
    for builds never published, because a release's files are its build's protected/ folder. The
    newest build is always kept whole, whatever its age: the next build starts from it.
    """
    published = {r.build for r in _published(cfg)}
    now = now or time.time()
    removed = []

    def last_ran(summaries: Path) -> float:
        return max((p.stat().st_mtime for p in summaries.glob("*.json")), default=summaries.stat().st_mtime)

    builds = sorted((cfg.local_path("reports") / "builds").glob("*"), key=last_ran)
    for summaries in builds[:-1]:
        if now - last_ran(summaries) <= days * 86400:
            continue
        zones = BuildZones(cfg, summaries.name)
        doomed = [zones.pseudonymized, zones.linked]
        if summaries.name not in published:
            doomed += [zones.protected, summaries]
        for path in doomed:
            if path.exists():
                clear(path)
                removed.append(path)
    return removed

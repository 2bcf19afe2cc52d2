"""
### kcure_build_library: staging -> pseudonymized -> linked -> protected -> checked -> immutable release

Runs when `kcure_ingest` emits **`kcure_staging_updated`** (after an ingest run in which at
least one feed-year was newly staged), or by hand with params. One run = one build = at most one
release. `max_active_runs=1`: two builds never publish at once. The tasks are the stages of
`kcure.pipeline.STAGES`, the same ones `kcure build` runs, in the same order.

Tasks, and what to do when one fails:
* `plan` fixes the build id and the release tag (params, or the run's time).
  *Fails* when they are already published: trigger again with new params.
* `pseudonymize` (Spark): staged feeds -> keyed HMAC linkage keys, identifiers dropped, generalized
  payload in `pseudonymized/<build>/`. The only task that sees identifiers and the linkage secret.
  *Fails* at once, without retrying, when a secret is missing or short: set
  `KCURE_LINKAGE_SECRET`/`KCURE_LIBRARY_SECRET` or the connections `kcure_linkage_secret` /
  `kcure_library_secret`. Other errors are retried.
* `link` (Spark): one pseudonymous person, cohort-only library tables and a per feed-year linkage
  report in `linked/<build>/`. Its input is intact, so clearing the task re-runs only the link.
* `protect` (Spark): k-anonymity by local recoding, from `linked/<build>/` into `protected/<build>/`
  (owner-only). Clearing it re-runs the recoding from link's output.
* `check` (Spark): the gates over `protected/<build>/`: k-anonymity and l-diversity, the library
  Great Expectations suites, referential integrity, accounting. A failed gate does not fail this
  task; `publish` refuses.
* `publish` registers the files as Iceberg snapshots, tags them, then appends the release marker
  (all or nothing) and emits the Asset `kcure_library_release`. *Fails* when a gate failed:
  nothing is published, the previous release stays current, and the message names the table, the
  check and a few pseudonymous keys.
* `report` writes the HTML release report (plots, privacy costs, gates, inputs, Data Docs links).
  *Fails* after the release is published: re-run `kcure report --release TAG`.

Every stage starts by clearing its own output for the build and never edits another stage's, so
clearing any task in the grid re-runs it (and, by Airflow's rules, what follows) safely.

**Where Spark runs**: `spark.master` in `conf/pipeline.yaml`. `local[N]` runs inside the worker;
a cluster URL (`spark://`, `yarn`, `k8s://`) submits `jobs/<stage>.py` with `spark-submit`,
shipping the `kcure` package and the configuration. Secrets go to the job as owner-only files,
never on a command line.

**Re-delivery / backfill**: a new delivery `dNNN` of one feed-year is staged by `kcure_ingest`,
which triggers this DAG. Each build recomputes the library from what is staged (every feed's
`CURRENT` version); unchanged feed-years are not re-parsed, and `pseudonymize` links an earlier
build's output of every feed whose staged versions, configuration, code and secrets are unchanged
(its summary and the release manifest say which: `reused`). The new release gets a new tag; older
releases stay queryable.

**Failures** call `kcure.alerts.on_failure`: an operator message in the log and in
`$KCURE_HOME/reports/alerts.jsonl`, and a POST to the `kcure_alerts` connection if it exists.

**Params**: `build` (default: the run's UTC time, `YYYYMMDD-HHMMSS`), `release` (default: the
build id), `truth` (a synthetic population's `_truth/` folder: adds linkage precision and recall).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Param, chain, dag, task

from kcure.alerts import default_args, fail_now
from kcure.assets import LIBRARY_RELEASE, STAGING_UPDATED
from kcure.pipeline import BUILD_ID, STAGES

ID_PATTERN = f"^({BUILD_ID.pattern})?$"  # empty (the default), or a valid build id / release tag


@dag(
    dag_id="kcure_build_library",
    description="Pseudonymize, link, gate and publish a release of the library (Spark + Iceberg)",
    schedule=STAGING_UPDATED,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["kcure", "build", "staging->release"],
    doc_md=__doc__,
    default_args=default_args(retries=1, retry_minutes=5),
    params={
        "build": Param("", type="string", pattern=ID_PATTERN, description="build id; empty: run time"),
        "release": Param("", type="string", pattern=ID_PATTERN, description="release tag; empty: build"),
        "truth": Param("", type="string", description="synthetic _truth/ folder for precision/recall; or empty"),
    },
)
def kcure_build_library() -> None:
    @task(multiple_outputs=False)
    def plan(params: dict[str, Any] | None = None, dag_run: Any = None) -> dict[str, Any]:
        """Fix the build id and the release tag; refuse ones already published."""
        from kcure import pipeline
        from kcure.core.config import load_config

        p = params or {}
        when = getattr(dag_run, "run_after", None) or getattr(dag_run, "logical_date", None) or datetime.now()
        build = p.get("build") or when.strftime("%Y%m%d-%H%M%S")
        try:
            planned = pipeline.plan(load_config(), build, p.get("release") or build, truth=p.get("truth") or None)
        except (pipeline.StageFailed, ValueError) as exc:
            raise fail_now(exc) from None
        return planned.to_dict()

    def stage_task(stage: Any) -> Any:
        name = stage.name
        doc = f"Reads {', '.join(stage.reads)}; writes {', '.join(stage.writes)}.\n\nIf it fails: {stage.on_failure}"

        @task(task_id=name, outlets=[LIBRARY_RELEASE] if name == "publish" else [], doc_md=doc, multiple_outputs=False)
        def run(plan: dict[str, Any]) -> dict[str, Any]:
            from kcure import pipeline
            from kcure.core import secrets
            from kcure.core.config import load_config

            try:
                s = pipeline.run_stage(load_config(), pipeline.Plan.from_dict(plan), name)
            except (secrets.SecretError, pipeline.StageFailed) as exc:  # retrying cannot help
                raise fail_now(exc) from None
            return {k: v for k, v in s.items() if k not in ("report", "checks", "failures", "privacy", "inputs")}

        return run

    planned: Any = plan()
    chain(*[stage_task(stage)(planned) for stage in STAGES])  # the registry's order: the order `kcure build` runs


kcure_build_library()

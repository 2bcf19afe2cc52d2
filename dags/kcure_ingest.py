"""
### kcure_ingest: landing zone -> verified, typed, gated staging

Pulls the yearly source feeds from the landing zone (a local folder or `s3://bucket/prefix`),
and for every **(feed, year)** takes the latest complete delivery `dNNN` (one with `_MANIFEST.json`).

Tasks:
* `discover_deliveries` lists the landing zone and returns one item per (feed, year) to ingest;
  deliveries without a manifest are *waiting* and skipped.
* `ingest_feed_year` (mapped, one per feed-year, named `feed/year` in the grid) checks every file's
  sha256 and row count against the manifest, parses with pyarrow, quarantines bad lines (file, line,
  column, reason), runs the raw-data Great Expectations suite, and atomically switches the staged
  partition. It emits the feed's Asset `kcure_staged_<feed>` when something new was staged.
* `staging_updated` runs when every feed-year has settled (even if some failed: their previous
  version stays live) and emits `kcure_staging_updated` if anything was newly staged. That Asset
  schedules `kcure_build_library`, so a build never starts from a half-ingested landing zone.
* `fail_run_if_a_feed_year_failed` only runs when a feed-year failed, and fails, so the run shows
  red even though `staging_updated` went ahead.

**Re-runs are cheap**: a feed-year whose delivery is already staged is reported `unchanged` and not parsed.

**When `ingest_feed_year` fails** (it fails without retrying on data problems):
* *sha256 / row count mismatch*: the institution's files do not match its manifest. Ask for a
  re-delivery (`d00N+1`); nothing of this delivery was staged and the previous version stays live.
* *critical expectations failed*: open the Data Docs named in the log
  (`$KCURE_HOME/reports/ingest/data_docs/<feed>/<year>/index.html`) to see which expectation and how many rows.
* *format not known*: the manifest or header does not match `conf/feeds.yaml`; a new feed version
  needs a contract change first.
Other errors (S3 unreachable, disk full) are retried.

Every attempt is appended to `$KCURE_HOME/reports/ingest/ingest_log.jsonl` (delivered = staged +
quarantined rows, with the manifest sha256 values). Quarantined rows are in `$KCURE_HOME/quarantine/`.

**Params**: `feeds` and `years` limit a run (empty = all); `landing` overrides the configured
landing zone. S3 credentials come from the Airflow connection `kcure_landing` (login = access key,
password = secret key, extra `endpoint_url`, `region_name`) or from the standard AWS environment.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Param, dag, task

from kcure.alerts import default_args
from kcure.assets import FEED_ASSETS, STAGED_FEEDS, STAGING_UPDATED
from kcure.core.deliveries import FEEDS


@dag(
    dag_id="kcure_ingest",
    description="Landing zone to verified, typed, gated staging, one mapped task per feed-year",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["kcure", "ingest", "landing->staging"],
    doc_md=__doc__,
    default_args=default_args(retries=2, retry_minutes=2),
    params={
        "feeds": Param([], type="array", items={"type": "string", "enum": list(FEEDS)}, description="only these feeds"),
        "years": Param([], type="array", items={"type": "integer"}, description="only these years"),
        "landing": Param("", type="string", description="local folder or s3:// URL; empty: conf/pipeline.yaml"),
    },
)
def kcure_ingest() -> None:
    @task
    def discover_deliveries(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """List the landing zone; one item per (feed, year) with a complete delivery."""
        import logging

        from kcure.core.config import load_config
        from kcure.stages.ingest.discover import discover, open_landing

        p = params or {}
        cfg = load_config()
        zone = open_landing(p.get("landing") or cfg.path("landing"))
        found = discover(zone, cfg.feeds, p.get("feeds") or None, p.get("years") or None)
        for w in found.waiting:
            logging.getLogger(__name__).warning("%s has no _MANIFEST.json yet: waiting", w)
        return [{"feed": d.feed, "year": d.year, "delivery": d.delivery} for d in found.latest]

    # multiple_outputs=False, on every task that returns a dict: Airflow infers True from the return
    # annotation and pushes each key as an XCom of its own besides the whole value. That was 13 XCom
    # writes per feed-year, about a third of each mapped task's own time (0.15 of 0.5 s in `dags test`).
    @task(outlets=[STAGED_FEEDS], map_index_template="{{ feed_year }}", multiple_outputs=False)
    def ingest_feed_year(
        feed: str, year: int, delivery: int, params: dict[str, Any] | None = None, outlet_events: Any = None
    ) -> dict[str, Any]:
        """Verify, parse, quarantine, gate and stage one feed-year; emit the feed's Asset if staged."""
        from dataclasses import asdict

        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from kcure.core.config import load_config
        from kcure.stages.ingest.ingestor import ingest_delivery

        context = get_current_context()
        context["feed_year"] = f"{feed}/{year}"  # type: ignore[typeddict-unknown-key]
        cfg = load_config()
        landing = (params or {}).get("landing") or cfg.path("landing")
        result = ingest_delivery(cfg, landing, feed, year, delivery, run_id=context["run_id"])
        if result is None:
            raise AirflowFailException(f"{feed}/{year}/d{delivery:03d} is no longer the latest complete delivery")
        if not result.ok:
            raise AirflowFailException(f"{result.label} {result.status}: {result.message}")
        if result.status == "staged":
            outlet_events[STAGED_FEEDS].add(
                FEED_ASSETS[feed], extra={"year": year, "delivery": delivery, "version": result.version}
            )
        return asdict(result)

    @task(outlets=[STAGING_UPDATED], trigger_rule="all_done", multiple_outputs=False)
    def staging_updated(run_id: str | None = None) -> dict[str, Any]:
        """Emit `kcure_staging_updated` once, when every feed-year settled and one was newly staged."""
        from airflow.sdk.exceptions import AirflowSkipException

        from kcure.core.config import load_config
        from kcure.stages.ingest.ingestor import read_log

        mine = [e for e in read_log(load_config(), run_id) if e["status"] == "staged"]
        staged = sorted(f"{e['feed']}/{e['year']}" for e in mine)
        if not staged:
            raise AirflowSkipException("nothing new was staged: the library build is not triggered")
        return {"staged": staged}

    @task(trigger_rule="one_failed")  # AirflowFailException: never retried
    def fail_run_if_a_feed_year_failed() -> None:
        """Watcher: keeps the run red for operators when any feed-year failed (staging_updated
        runs regardless, so the run's state would otherwise follow it)."""
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("at least one feed-year failed: see the red ingest_feed_year tasks")

    ingested = ingest_feed_year.expand_kwargs(discover_deliveries())
    ingested >> staging_updated()
    ingested >> fail_run_if_a_feed_year_failed()


kcure_ingest()

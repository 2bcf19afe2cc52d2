"""
### kcure_housekeeping: daily: expired projects closed, audit chains verified, old zones purged

Runs once a day in the custodian's account. The four tasks are independent of each other's outcome
(a broken audit chain never stops the purge, nor the other way round); the run fails if any fails.

Tasks, and what to do when one fails:
* `close_expired_projects`: closes every research project whose application has expired (`kcure project
  expire`): its workspace is deleted, its key overwritten and removed, its log and manifests kept.
  *Fails* when a project cannot be closed (the message names it); fix that, and the next run closes it.
* `verify_audit_chains` (after the closing, so it checks those entries too): every project's audit log,
  each entry's link and MAC under the custodian's audit key, and its head (`kcure audit verify`).
  *Fails* at once, without retrying, when a chain is broken: the message names the project and the first
  broken entry. Treat it as a security incident: do not repair the log; stop the workspace service,
  keep a copy of `projects/<id>/` and `audit/heads/`, and find out who could write them.
* `purge_staging`: superseded staged versions older than `staging.retention_days` (the live version of
  every feed-year, which any rebuild reads, is never touched).
* `purge_builds`: build zones whose last stage ran more than `builds.retention_days` ago; a published
  build keeps its `protected/` folder (its release's files), and the newest build is always kept whole,
  because the next (incremental) build starts from it.

**Failures** call `kcure.alerts.on_failure` (task log, `reports/alerts.jsonl`, `kcure_alerts` webhook).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task

from kcure.alerts import default_args, fail_now


@dag(
    dag_id="kcure_housekeeping",
    description="Daily: close expired projects, verify every audit chain, purge old staging and build zones",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["kcure", "projects", "housekeeping"],
    doc_md=__doc__,
    default_args=default_args(retries=1, retry_minutes=10),
)
def kcure_housekeeping() -> None:
    @task(doc_md="Close every project whose application has expired (workspace and key destroyed).")
    def close_expired_projects() -> list[str]:
        import os

        from kcure.core.config import load_config
        from kcure.projects.lifecycle import Caller
        from kcure.projects.provisioning import close_expired
        from kcure.projects.workspace import store_for

        cfg = load_config()
        return close_expired(cfg, store_for(cfg, os.getuid()), Caller.this_process())

    @task(
        doc_md="Verify every project's audit chain and head; a break fails at once: a security incident.",
        trigger_rule="all_done",  # verified even when closing failed
        multiple_outputs=False,  # one XCom, not one per key (see kcure_ingest)
    )
    def verify_audit_chains() -> dict[str, Any]:
        import os

        from kcure.core.config import load_config
        from kcure.projects.workspace import store_for

        cfg = load_config()
        store = store_for(cfg, os.getuid())
        verdicts = [store.audit.verify(p, store.folder(p) / "events.jsonl")[0] for p in store.ids()]
        broken = [v.line() for v in verdicts if not v.ok]
        if broken:
            raise fail_now(RuntimeError("audit chain broken: " + "; ".join(broken)))
        return {"verified": len(verdicts), "entries": sum(v.entries for v in verdicts)}

    @task(doc_md="Delete superseded staged versions older than staging.retention_days (never a live one).")
    def purge_staging() -> int:
        from kcure.core.config import load_config
        from kcure.core.staging import Staging

        cfg = load_config()
        days = float(cfg.pipeline["staging"]["retention_days"])
        return len(Staging(cfg.local_path("staging"), cfg.local_path("quarantine")).purge(days))

    @task(doc_md="Delete build zones older than builds.retention_days (keeps releases' files and the newest build).")
    def purge_builds() -> int:
        from kcure import pipeline
        from kcure.core.config import load_config

        cfg = load_config()
        return len(pipeline.purge_builds(cfg, float(cfg.pipeline["builds"]["retention_days"])))

    close_expired_projects() >> verify_audit_chains()
    purge_staging()
    purge_builds()


kcure_housekeeping()

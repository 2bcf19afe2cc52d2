"""Operator-facing failure messages for the DAGs: what failed, where to look, what to do.

``on_failure`` is the DAGs' ``on_failure_callback``. It writes one message to the task log and one
JSON line to ``<reports>/alerts.jsonl``, and, when the Airflow connection named in
``conf/pipeline.yaml`` ``alerts.connection`` exists, POSTs a JSON summary to its URL. The log line and the owner-only
alerts file carry the exception's message (the pipeline's own messages hold no data values); the
POST, which leaves the closed environment, carries only the DAG, task, run, try, what to do and
where the log is, never the message. Notification problems are logged and never mask the task's
own failure.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("kcure.alerts")

#: what an operator should do when a task fails, by task id (the build's stages say it in kcure.pipeline.STAGES)
WHAT_TO_DO = {
    "plan": "Another build may already use this build id, or the release tag is taken: trigger again "
    "with new 'build' / 'release' params.",
    "discover_deliveries": "The landing zone could not be listed: check the path or the kcure_landing connection.",
    "fail_run_if_a_feed_year_failed": "Only a summary: look at the red ingest_feed_year tasks of this run.",
    "staging_updated": "The ingest log could not be read: check $KCURE_HOME/reports/ingest/ingest_log.jsonl.",
    "ingest_feed_year": "See the task log: checksum/row-count mismatches need a re-delivery, failed "
    "expectations are explained in the feed-year's Data Docs.",
    "check_application": "The message names the rule: the project is not approved, has expired, asks for finer "
    "dates than it had, or its release does not exist. Amend and review the application, or publish the release.",
    "close_expired_projects": "The message names the project that could not be closed (its key store or "
    "workspace); fix that and the next daily run closes it.",
    "verify_audit_chains": "A broken audit chain is a security incident: do not repair the log. Stop the workspace "
    "service, copy projects/<id>/ and audit/heads/, and find out who could write them (kcure audit verify).",
    "purge_staging": "Check that the custodian's account owns everything under staging/ and quarantine/.",
    "purge_builds": "Check that the custodian's account owns the build zones and reports/builds/.",
    "provision": "A refused privacy gate names the failing model and what the application could change; nothing "
    "was written and the earlier extract stands. Otherwise see the Spark log and trigger again.",
}


def default_args(retries: int, retry_minutes: int) -> dict[str, Any]:
    """Every DAG's task defaults: the owner, its retries, and the operator alert on failure."""
    from datetime import timedelta

    return {
        "owner": "kcure-data-engineering",
        "retries": retries,
        "retry_delay": timedelta(minutes=retry_minutes),
        "on_failure_callback": on_failure,
    }


def fail_now(exc: BaseException) -> Exception:
    """A task failure that retrying cannot help: failed at once, with the message that says why."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(exc))


def what_to_do(task_id: str) -> str:
    from kcure.pipeline import STAGE

    if task_id in STAGE:
        return STAGE[task_id].on_failure
    return WHAT_TO_DO.get(task_id, "See the task log.")


def message(context: dict[str, Any]) -> dict[str, Any]:
    ti = context.get("task_instance") or context.get("ti")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    exc = context.get("exception")
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": context.get("run_id") or getattr(ti, "run_id", "?"),
        "try_number": getattr(ti, "try_number", None),
        "error": f"{type(exc).__name__}: {exc}" if exc is not None else "unknown",
        "what_to_do": what_to_do(str(task_id)),
    }


def on_failure(context: dict[str, Any]) -> None:
    from kcure.core.config import load_config

    msg = message(context)
    log.error(
        "KCURE OPERATOR ALERT: %s.%s failed in run %s (try %s): %s\nWhat to do: %s",
        msg["dag_id"],
        msg["task_id"],
        msg["run_id"],
        msg["try_number"],
        msg["error"],
        msg["what_to_do"],
    )
    try:
        cfg = load_config()
        path = cfg.local_path("reports") / "alerts.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(json.dumps(msg) + "\n")
        conn_id = str((cfg.pipeline.get("alerts") or {}).get("connection") or "")
    except Exception:  # an alert must never raise over the failure it reports
        log.exception("could not record the alert")
        return
    if conn_id:
        outside = {k: v for k, v in msg.items() if k != "error"}
        outside["details"] = f"task log, and {path} on the Airflow host"
        _notify(conn_id, outside)


def _notify(conn_id: str, msg: dict[str, Any]) -> None:
    from kcure.core.connections import airflow_connection

    try:
        conn = airflow_connection(conn_id)
    except Exception as exc:  # an alert never raises over the failure it reports, but says why it was not sent
        log.warning("could not look up connection %s: %s", conn_id, type(exc).__name__)
        return
    if conn is None:
        return  # no channel configured: the log and alerts.jsonl are the channel
    url = (conn.extra_dejson or {}).get("url") or str(conn.host or "")
    if not url.startswith(("https://", "http://")):
        log.warning("connection %s has no http(s) URL in extra 'url' or host: not notified", conn_id)
        return
    try:
        req = urllib.request.Request(
            url, data=json.dumps(msg).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=10):  # an operator-configured URL
            pass
    except Exception as exc:
        log.warning("could not notify through connection %s: %s", conn_id, type(exc).__name__)

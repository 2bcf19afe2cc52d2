"""
### kcure_provision_project: release -> one approved research project's extract

Triggered by hand (or by the portal) with the **`project`** id of an approved application. It runs
the same code as `kcure project provision ID`, in the custodian's account, and writes the project's
extract into its workspace (`$KCURE_HOME/projects/<id>/workspace/`), never anywhere else.

Tasks, and what to do when one fails:
* `check_application`: the project's current application version is approved (or already provisioned: this is a
  re-provisioning), not expired, asks for nothing finer than its earlier extract had, and its release
  (`latest` or a tag) exists. *Fails* without retrying: the message names the rule; submit an amendment,
  have it reviewed, or publish the release first.
* `provision` (Spark): the cohort's rows of the requested tables, columns and years from exactly the
  release's snapshots, re-keyed under the project's own key, dates shifted and cut to the asked
  precision, recoded for this cohort, then the privacy gate (person-level and one-event attacker
  models, `conf/privacy.yaml` `extracts:`). *Fails* without retrying when the gate refuses: the message
  says which model failed, by how much, and what the application could change; nothing was written
  and an earlier extract stays as it was. The refusal is in the project's log. Other errors (Spark)
  are retried once.
* The committee's HTML report and the manifest are kept under `projects/<id>/provisions/<n>/`.

**Failures** call `kcure.alerts.on_failure` (task log, `reports/alerts.jsonl`, `kcure_alerts` webhook).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Param, dag, task

from kcure.alerts import default_args, fail_now
from kcure.projects.application import PROJECT_ID


@dag(
    dag_id="kcure_provision_project",
    description="Provision an approved research project's extract from its release (Spark)",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["kcure", "projects", "release->project extract"],
    doc_md=__doc__,
    default_args=default_args(retries=1, retry_minutes=5),
    params={"project": Param("", type="string", pattern=f"^{PROJECT_ID.pattern}$", description="project id")},
)
def kcure_provision_project() -> None:
    def _store() -> tuple[Any, Any, Any]:
        import os

        from kcure.core.config import load_config
        from kcure.projects.lifecycle import Caller
        from kcure.projects.workspace import store_for

        cfg = load_config()
        return cfg, store_for(cfg, os.getuid()), Caller.this_process()

    @task(doc_md="The application is approved, not expired, no finer than before; its release exists.")
    def check_application(params: dict[str, Any] | None = None) -> str:
        from kcure.core.catalog import ReleaseError, open_catalog, resolve
        from kcure.projects import provisioning
        from kcure.projects.lifecycle import ProjectRefused

        project = str((params or {}).get("project", ""))
        cfg, store, caller = _store()
        try:
            _, app = provisioning.check(cfg, store, project, caller)
            resolve(open_catalog(cfg), app.release)
        except (ProjectRefused, ReleaseError) as exc:
            raise fail_now(exc) from None
        return project

    @task(doc_md="Build the extract and gate it; a refusal writes nothing and is not retried.", multiple_outputs=False)
    def provision(project: str) -> dict[str, Any]:
        from kcure.projects import provisioning
        from kcure.projects.keys import ProjectKeyError
        from kcure.projects.lifecycle import ProjectRefused

        cfg, store, caller = _store()
        try:
            manifest = provisioning.provision(cfg, store, project, caller)
        except (ProjectRefused, ProjectKeyError) as exc:
            raise fail_now(exc) from None
        print(provisioning.summary_line(manifest))
        return {"project": project, "provision": manifest["provision"], "release": manifest["release"]["tag"],
                "passed": manifest["privacy"]["passed"]}  # fmt: skip

    provision(check_application())  # type: ignore[arg-type]


kcure_provision_project()

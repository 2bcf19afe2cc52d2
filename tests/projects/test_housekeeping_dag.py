"""kcure_housekeeping through Airflow itself (`airflow dags test`): an expired project is closed, a
tampered audit chain fails its task with an alert that names the entry (and stops nothing else), and the
purges remove what retention allows and keep what a rebuild needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.projects.conftest import approved_minimal

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.slow]

EXPIRED, TAMPERED, LIVE = "kc20261130301", "kc20261130302", "kc20261130303"
OLD = time.time() - 400 * 86400


def _old(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for p in [path, *path.rglob("*")]:
        os.utime(p, (OLD, OLD))
    return path


def test_housekeeping_closes_verifies_and_purges(tmp_path: Path) -> None:
    import dataclasses

    from kcure.core.config import load_config
    from kcure.projects.audit import Audit
    from kcure.projects.lifecycle import ProjectStore, Rules
    from kcure.projects.provisioning import key_store

    home = tmp_path / "home"
    cfg = dataclasses.replace(load_config(), home=home)
    store = ProjectStore(home / "projects", Rules(os.getuid(), 4242, "c", 1), Audit.for_config(cfg))
    for project, expires in ((EXPIRED, "2021-01-31"), (TAMPERED, "2099-01-31"), (LIVE, "2099-01-31")):
        approved_minimal(cfg, store, project, expires, date(2020, 6, 1))
    key_store(cfg).load_or_create(EXPIRED)
    log = store.folder(TAMPERED) / "events.jsonl"
    lines = log.read_text().splitlines()
    lines[1] = lines[1].replace('"approved"', '"rejected"')
    log.write_text("\n".join(lines) + "\n")

    staged = home / "staging" / "hira_t200" / "2016"
    _old(staged / "v-old")
    (staged / "v-live").mkdir(parents=True)
    (staged / "CURRENT").write_text(json.dumps({"version": "v-live"}))
    _old(staged / "v-live")
    for build in ("b-older", "b-newest"):
        for zone in ("pseudonymized", "linked", "protected"):
            _old(home / zone / build)
        (home / "reports" / "builds" / build).mkdir(parents=True)
        (home / "reports" / "builds" / build / "link.json").write_text("{}")
        _old(home / "reports" / "builds" / build)
        time.sleep(0.01)
    os.utime(home / "reports" / "builds" / "b-newest" / "link.json", (OLD + 60, OLD + 60))

    env = {**os.environ, "KCURE_HOME": str(home), "AIRFLOW_HOME": str(tmp_path / "airflow")}
    airflow = str(REPO / "scripts" / "airflow.sh")
    subprocess.run([airflow, "db", "migrate"], env=env, cwd=REPO, capture_output=True, check=True, timeout=600)
    run = subprocess.run([airflow, "dags", "test", "kcure_housekeeping"], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=900)  # fmt: skip
    out = run.stdout + run.stderr

    assert store.state(EXPIRED).status == "closed" and store.state(EXPIRED).note == "expired", out[-3000:]
    assert key_store(cfg).load(EXPIRED) is None
    assert store.state(LIVE).status == "approved"
    alerts = [json.loads(line) for line in (home / "reports" / "alerts.jsonl").read_text().splitlines()]
    failed = {a["task_id"]: a for a in alerts}
    assert set(failed) == {"verify_audit_chains"}, alerts
    assert f"{TAMPERED}: entry 2 is broken: its MAC does not match" in failed["verify_audit_chains"]["error"]
    assert "security incident" in failed["verify_audit_chains"]["what_to_do"]
    assert not (staged / "v-old").exists() and (staged / "v-live").exists()  # the live version is never purged
    assert not (home / "pseudonymized" / "b-older").exists() and not (home / "linked" / "b-older").exists()
    assert all((home / zone / "b-newest").exists() for zone in ("pseudonymized", "linked", "protected"))
    verify = subprocess.run([sys.executable, "-m", "kcure.cli", "audit", "verify"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert verify.returncode == 1 and "3 project(s) verified, 1 broken" in verify.stdout

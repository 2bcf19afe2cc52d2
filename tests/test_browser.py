"""The operator's view: `airflow standalone` on loopback runs a build triggered through the REST API,
and headless Chromium shows the DAGs, the successful run and the release report's plots."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kcure.access import query as access
from kcure.core import catalog
from kcure.core.config import load_config
from tests.cdp import Browser
from tests.conftest import REPO, TEST_LIBRARY_SECRET, TEST_LINKAGE_SECRET, WHOLE_BUILDS_TIMEOUT

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(WHOLE_BUILDS_TIMEOUT)]


@dataclass
class Airflow:
    url: str
    token: str
    home: Path
    conf: Path
    log: Path

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(
            f"{self.url}/api/v2{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, fn, timeout: float, log: Path):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()
            if value:
                return value
        except (OSError, urllib.error.URLError, KeyError, ValueError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n" + log.read_text()[-4000:])
        time.sleep(2)


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, cfg) -> Iterator[Airflow]:  # type: ignore[no-untyped-def]
    home = tmp_path_factory.mktemp("operator-home")
    conf = home / "conf"
    conf.mkdir()
    for name, content in cfg.raw.items():
        (conf / name).write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    pipeline["defaults"]["spark"].update({"driver_memory": "2g", "shuffle_partitions": 2})
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline), encoding="utf-8")
    env = {**os.environ, "KCURE_HOME": str(home), "KCURE_CONF": str(conf)}
    kcure = [sys.executable, "-m", "kcure.cli"]
    landing = home / "landing"
    for cmd in (
        [*kcure, "generate", "--patients", "120", "--seed", "11", "--out", str(landing)],
        [*kcure, "ingest", "--landing", str(landing)],
    ):
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=600)

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / "standalone.log"
    env.update(
        {
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "KCURE_LINKAGE_SECRET": TEST_LINKAGE_SECRET,
            "KCURE_LIBRARY_SECRET": TEST_LIBRARY_SECRET,
        }
    )
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(REPO / "scripts" / "airflow.sh"), "standalone"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        passwords = home / "airflow" / "simple_auth_manager_passwords.json.generated"

        def token() -> str:
            body = json.dumps({"username": "admin", "password": json.loads(passwords.read_text())["admin"]})
            req = urllib.request.Request(
                f"{url}/auth/token", data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                return str(json.loads(r.read())["access_token"])

        af = Airflow(url, _wait("the API server and a token", token, 240, log), home, conf, log)
        _wait("the scheduler", lambda: af.api("GET", "/monitor/health")["scheduler"]["status"] == "healthy", 120, log)
        _wait("both DAGs parsed", lambda: af.api("GET", "/dags")["total_entries"] >= 2, 180, log)
        yield af
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def build_run(airflow: Airflow) -> dict[str, Any]:
    """Unpause kcure_build_library, trigger it through the REST API and wait for it to finish."""
    airflow.api("PATCH", "/dags/kcure_build_library", {"is_paused": False})
    run = airflow.api("POST", "/dags/kcure_build_library/dagRuns", {"logical_date": None, "conf": {"build": "web1"}})
    run_id = run["dag_run_id"]

    def finished() -> dict[str, Any] | None:
        r = airflow.api("GET", f"/dags/kcure_build_library/dagRuns/{run_id}")
        return dict(r) if r["state"] in ("success", "failed") else None

    final = _wait("the build run", finished, 900, airflow.log)
    tis = airflow.api("GET", f"/dags/kcure_build_library/dagRuns/{run_id}/taskInstances")["task_instances"]
    states = {t["task_id"]: t["state"] for t in tis}
    assert final["state"] == "success", states
    return {"run_id": run_id, "states": states}


def test_rest_triggered_build_succeeds_and_publishes(airflow: Airflow, build_run: dict[str, Any]) -> None:
    assert build_run["states"] == dict.fromkeys(
        ("plan", "pseudonymize", "link", "protect", "check", "publish", "report"), "success"
    )
    cfg = load_config(airflow.conf)
    import dataclasses

    cfg = dataclasses.replace(cfg, home=airflow.home)
    assert catalog.resolve(catalog.open_catalog(cfg), "latest").tag == "web1"
    # what Airflow wrote while it ran the build (its database, config, passwords, every task's log, which
    # names feeds, builds and alerts) is its owner's alone: no group or other permission bit on any of it
    written = [p for p in (airflow.home / "airflow").rglob("*") if not p.is_symlink()]
    assert [p for p in written if p.suffix == ".log" and "task_id=pseudonymize" in str(p)], "task logs were written"
    assert [str(p) for p in written if p.stat().st_mode & 0o077] == []


def test_the_ui_shows_the_dags_and_the_successful_run(
    airflow: Airflow, build_run: dict[str, Any], tmp_path: Path
) -> None:
    browser = Browser(tmp_path / "profile")
    try:
        browser.set_cookie(airflow.url, "_token", airflow.token)
        browser.goto(f"{airflow.url}/dags")
        try:
            browser.wait_for(
                "document.body.innerText.includes('kcure_build_library') "
                "&& document.body.innerText.includes('kcure_ingest')",
                timeout=60,
            )
            browser.goto(f"{airflow.url}/dags/kcure_build_library/runs/{build_run['run_id']}")
            tasks = " && ".join(f"document.body.innerText.includes('{t}')" for t in ("protect", "publish", "report"))
            text = browser.wait_for(  # the grid lists the tasks once it has loaded
                f"document.body.innerText.includes({json.dumps(build_run['run_id'])}) "
                f"&& /success/i.test(document.body.innerText) && {tasks} && document.body.innerText",
                timeout=90,
            )
            assert "protect" in text and "publish" in text and "report" in text
        finally:
            browser.screenshot(tmp_path / "ui.png")
    finally:
        browser.close()


def test_the_release_report_plots_render_in_the_browser(
    airflow: Airflow, build_run: dict[str, Any], tmp_path: Path
) -> None:
    import dataclasses

    cfg = dataclasses.replace(load_config(airflow.conf), home=airflow.home)
    assert catalog.resolve(catalog.open_catalog(cfg), "web1").tag == "web1"
    page = airflow.home / "reports" / "releases" / "web1" / "index.html"
    browser = Browser(tmp_path / "profile")
    try:
        browser.goto(page.as_uri())
        plots = browser.evaluate(
            """[...document.querySelectorAll('svg.plot')].map(s => ({
                id: s.id,
                width: s.getBoundingClientRect().width,
                height: s.getBoundingClientRect().height,
                drawn: [...s.querySelectorAll('g.mark rect, g.cell rect')].filter(r => {
                    const b = r.getBBox(); return b.width > 0 && b.height > 0; }).length,
                marks: [...s.querySelectorAll('g.mark, g.cell')].length,
                rows: new Set([...s.querySelectorAll('g.cell')].map(g => g.dataset.row)).size,
                total: [...s.querySelectorAll('g.mark')].reduce((a, g) => a + Number(g.dataset.value), 0),
            }))"""
        )
    finally:
        browser.close()
    by_id = {p["id"]: p for p in plots}
    assert set(by_id) >= {"cohort-by-year", "cohort-by-site", "cohort-year-site", "linkage-rate", "k-distribution"}
    for p in plots:
        # a grid is as tall as its rows (24 px each, 50 px of titles and labels); the charts have a fixed size
        min_height = 50 + 24 * p["rows"] if p["id"] == "cohort-year-site" else 100
        assert p["width"] > 100 and p["height"] >= min_height, p
        assert p["marks"] > 0 and p["drawn"] == p["marks"], p
    # the bars drawn are the release's protected figures: masked where few people, rounded elsewhere
    from kcure.access.figures import release_figures

    release = catalog.resolve(catalog.open_catalog(cfg), "web1")
    with access.open_release(cfg, release) as con:
        figures = release_figures(cfg, release, con)
    assert by_id["cohort-by-year"]["total"] == sum(v for v in figures.by_year.values() if v is not None)
    assert all(v is None or v % cfg.privacy.rounding == 0 for v in figures.by_year.values())

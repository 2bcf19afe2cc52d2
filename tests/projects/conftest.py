"""A KCURE_HOME with a published release for the provisioning tests, and helpers that file, approve
and provision applications in it (as the custodian, with two committee reviewers)."""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.build_fixture import Build, copy_build
from tests.conftest import REPO

COMMITTEE_GID = 424242
REVIEWERS = ("rev-a", "rev-b")


@dataclass
class ProjectHome:
    cfg: Any  # kcure.core.config.Config of this home
    relaxed: Any  # the same home, with one-event thresholds that every extract passes (figures still measured)
    built: Build

    def store(self) -> Any:
        from kcure.projects.audit import Audit
        from kcure.projects.lifecycle import ProjectStore, Rules

        rules = Rules(os.getuid(), COMMITTEE_GID, "test-committee", 2)
        return ProjectStore(self.cfg.home / "projects", rules, Audit.for_config(self.cfg))

    def publish(self, tag: str) -> Any:
        """Publish the small build again as a newer release ``tag``."""
        from kcure import pipeline
        from kcure.core import catalog

        copy_build(self.built.home, "t1", self.cfg.home, f"b-{tag}")
        pipeline.run_plan(self.cfg, pipeline.plan(self.cfg, f"b-{tag}", tag, start="publish", stop="publish"))
        return catalog.resolve(catalog.open_catalog(self.cfg), tag)


def application(project: str, tables: dict[str, Any], **fields: Any) -> bytes:
    doc: dict[str, Any] = {
        "project": project,
        "title": f"test project {project}",
        "principal_investigator": "nobody",
        "analysts": ["daemon"],
        "purpose": "tests",
        "irb": {"number": "T-IRB-1", "approved": "2026-01-05"},
        "pledges": {"nobody": "2026-01-06", "daemon": "2026-01-06"},
        "release": "latest",
        "cohort": {"sites": ["C00-C97"], "years": [2012, 2020]},
        "tables": tables,
        "date_precision": "month",
        "expires": "2099-12-31",
    }
    for k, v in fields.items():
        doc[k] = v
    return yaml.safe_dump(doc, sort_keys=False).encode()


def approve(home: ProjectHome, data: bytes) -> str:
    """Submit as the custodian and approve with two committee reviewers; the project id."""
    from kcure.projects.application import parse_application
    from kcure.projects.lifecycle import Caller

    cfg = home.cfg
    app = parse_application(data, "application.yaml", cfg.library, cfg.privacy.window)
    store = home.store()
    store.submit(app, data, Caller.this_process())
    for i in range(len(REVIEWERS)):
        store.review(app.project, reviewer(i), approve=True, note="fine")
    assert store.state(app.project).status == "approved"
    return app.project


def approved_minimal(cfg: Any, store: Any, project: str, expires: str, today: Any) -> None:
    """A one-table application (RGST, C16 2015-2016), submitted by this process and approved by one
    reviewer of group 4242, as it stood on ``today``."""
    from kcure.projects.application import parse_application
    from kcure.projects.lifecycle import Caller

    doc = {"project": project, "title": "t", "principal_investigator": "nobody", "analysts": ["nobody"],
           "purpose": "p", "irb": {"number": "1", "approved": f"{today.year}-01-01"},
           "pledges": {"nobody": f"{today.year}-01-01"}, "cohort": {"sites": ["C16"], "years": [2015, 2016]},
           "tables": {"RGST": {"columns": "all"}}, "expires": expires}  # fmt: skip
    data = yaml.safe_dump(doc).encode()
    app = parse_application(data, "a.yaml", cfg.library, cfg.privacy.window, today=today)
    store.submit(app, data, Caller.this_process())
    store.review(project, Caller("rev", 99999, frozenset({4242})), approve=True, note="ok")


def reviewer(i: int) -> Any:
    from kcure.projects.lifecycle import Caller

    return Caller(REVIEWERS[i], 60000 + i, frozenset({COMMITTEE_GID}))


@pytest.fixture(scope="session")
def project_home(built: Build, cfg, tmp_path_factory: pytest.TempPathFactory) -> ProjectHome:  # type: ignore[no-untyped-def]
    """The small build published as release p1 in a home of its own."""
    from kcure.core.config import load_config

    home = tmp_path_factory.mktemp("projects-home")
    c = dataclasses.replace(cfg, home=home)
    conf = tmp_path_factory.mktemp("relaxed-conf")
    shutil.copytree(REPO / "conf", conf, dirs_exist_ok=True)
    privacy = yaml.safe_load((conf / "privacy.yaml").read_text(encoding="utf-8"))
    privacy["extracts"].update(max_average_risk=1.0, max_unique_share=1.0)
    (conf / "privacy.yaml").write_text(yaml.safe_dump(privacy, sort_keys=False), encoding="utf-8")
    relaxed = dataclasses.replace(load_config(conf), home=home)
    h = ProjectHome(c, relaxed, built)
    h.publish("p1")
    return h


def read_extract(folder: Path) -> dict[str, Any]:
    """Every table of an extract as a pandas DataFrame, rows in a stable order."""
    import pyarrow.parquet as pq

    out = {}
    for table in sorted(p.name for p in folder.iterdir() if p.is_dir()):
        df = pq.read_table(folder / table).to_pandas()
        out[table] = df.sort_values(list(df.columns)).reset_index(drop=True)
    return out

"""The stage model: one registry, one planner; who may see which secret, and what may never run again."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from kcure import pipeline

pytestmark = pytest.mark.unit


def test_only_the_pseudonymize_stage_is_given_the_linkage_secret() -> None:
    holders = [s.name for s in pipeline.STAGES if "linkage" in s.secrets]
    assert holders == ["pseudonymize"]
    assert pipeline.STAGE["link"].secrets == ("library",)
    assert all(s.secrets == () for s in pipeline.STAGES[2:])


def test_each_stage_needs_the_one_before_it_and_the_order_follows_the_zones() -> None:
    names = [s.name for s in pipeline.STAGES]
    assert names == ["pseudonymize", "link", "protect", "check", "publish", "report"]
    assert [s.needs for s in pipeline.STAGES] == [None, *names[:-1]]
    owns = {s.name: s.owns for s in pipeline.STAGES}
    assert owns == {
        "pseudonymize": ("pseudonymized",),
        "link": ("linked",),
        "protect": ("protected",),
        "check": ("data_docs",),
        "publish": (),  # the release is immutable: publishing again finishes it, never clears it
        "report": (),
    }
    for s in pipeline.STAGES[1:]:  # every zone a stage reads is written by an earlier stage (or by ingest)
        earlier = {z for t in pipeline.STAGES[: names.index(s.name)] for z in t.writes} | {"staging"}
        assert set(s.reads) <= earlier, s.name


def _publish_marker(cfg, tag: str, build: str) -> None:  # type: ignore[no-untyped-def]
    """A release marker row, as the publish stage appends it last (no tables needed for the planner)."""
    from kcure.core.catalog import RELEASES_SCHEMA, _releases_table, open_catalog

    row = {"release": tag, "created_at": datetime.now(UTC), "build": build, "snapshots": "{}", "manifest": "{}"}
    _releases_table(open_catalog(cfg)).append(pa.Table.from_pylist([row], schema=RELEASES_SCHEMA))


def test_plan_picks_a_build_id_and_refuses_published_builds_and_taken_tags(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = dataclasses.replace(cfg, home=tmp_path)
    p = pipeline.plan(c)
    assert pipeline.BUILD_ID.fullmatch(p.build) and p.release is None
    assert p.stages == ("pseudonymize", "link", "protect", "check")
    assert pipeline.plan(c, "b1", "r1").stages == (*p.stages, "publish", "report")
    assert pipeline.plan(c, "b1", "r1", start="protect", stop="check").stages == ("protect", "check")
    _publish_marker(c, "r1", "b1")
    with pytest.raises(pipeline.StageFailed, match="build b1 is published as release r1"):
        pipeline.plan(c, "b1", "r2")
    with pytest.raises(pipeline.StageFailed, match="build b1 is published as release r1"):
        pipeline.plan(c, "b1", "r1", start="link")
    with pytest.raises(pipeline.StageFailed, match="release r1 is already published from build b1"):
        pipeline.plan(c, "b2", "r1")
    # publishing the same build as the same tag again is the idempotent retry of a publish
    assert pipeline.plan(c, "b1", "r1", start="publish").stages == ("publish", "report")
    with pytest.raises(ValueError, match="publishing needs a release tag"):
        pipeline.plan(c, "b3", stop="publish")
    with pytest.raises(ValueError, match="must be 1-64 letters"):
        pipeline.plan(c, "../etc")


def test_a_stage_refuses_to_start_before_its_input_is_complete_or_on_a_published_build(  # type: ignore[no-untyped-def]
    cfg, tmp_path: Path, monkeypatch
) -> None:
    c = dataclasses.replace(cfg, home=tmp_path)
    monkeypatch.setenv("KCURE_LIBRARY_SECRET", "B" * 40)
    out = tmp_path / "linked" / "b1"
    out.mkdir(parents=True)
    (out / "kept").write_text("link's earlier output")
    with pytest.raises(pipeline.StageFailed, match="needs the output of pseudonymize, which has not completed"):
        pipeline.run_stage(c, pipeline.Plan("b1", None, ("link",)), "link")
    assert (out / "kept").exists()  # refused before anything was cleared
    _publish_marker(c, "r1", "b1")
    (tmp_path / "reports" / "builds" / "b1").mkdir(parents=True)
    (tmp_path / "reports" / "builds" / "b1" / "pseudonymize.json").write_text("{}")
    with pytest.raises(pipeline.StageFailed, match="build b1 is published; its outputs are immutable"):
        pipeline.run_stage(c, pipeline.Plan("b1", "r1", ("link",)), "link")
    assert (out / "kept").exists()


def test_publish_refuses_a_build_whose_check_failed(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = dataclasses.replace(cfg, home=tmp_path)
    summaries = tmp_path / "reports" / "builds" / "b1"
    summaries.mkdir(parents=True)
    failure = "T200: expect_column_values_to_be_unique(MID) failed: 1 of 10 rows unexpected"
    (summaries / "check.json").write_text(json.dumps({"success": False, "failures": [failure]}))
    with pytest.raises(pipeline.StageFailed) as exc:
        pipeline.run_stage(c, pipeline.Plan("b1", "r1", ("publish",)), "publish")
    assert "release r1 was NOT published" in str(exc.value) and failure in str(exc.value)
    from kcure.core.catalog import list_releases, open_catalog

    assert list_releases(open_catalog(c)) == []

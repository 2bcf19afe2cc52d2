"""No small count leaves, directly or by subtraction: two consecutive releases' reports, `releases show
--json` and their `diff --json`, read as an outsider reads them, and solved together as a linear system.

The relations are the test's own (a year's cancers are the sum of its sites', a table's rows the sum of
its years', a diff's change the second figure less the first); the published figures are constants,
the masked and the unpublished ones unknowns. No masked figure may be fixed by the system, and no
published count may be between 1 and the threshold."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.build_fixture import Published, copy_build

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]


class Keys(HTMLParser):
    """Every figure a report page shows: {data-key: data-value ('' where masked)}."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "data-key" in a:
            self.figures[a["data-key"]] = a.get("data-value", "")


@pytest.fixture(scope="module")
def outputs(local_release: Published) -> Iterator[dict[str, Any]]:
    """Release 'local', and 'local-b': the same build less its 2019 deaths; every output of both."""
    import os
    import subprocess
    import sys

    from kcure import pipeline
    from tests.conftest import REPO

    c = local_release.cfg
    home = c.home  # type: ignore[attr-defined]
    copy_build(home, "r1", home, "r1b", zones=("protected",))
    for f in (home / "protected" / "r1b" / "DEATH").glob("*.parquet"):
        t = pq.read_table(f)
        f.unlink()
        pq.write_table(t.filter(pc.invert(pc.starts_with(t["DREGDATE"], "2019"))), f)
    pipeline.run_plan(c, pipeline.plan(c, "r1b", "local-b", start="publish"))  # type: ignore[arg-type]
    env = {**os.environ, "KCURE_HOME": str(home), "KCURE_CONF": str(REPO / "conf")}

    def kcure(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "kcure.cli", *args], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    out: dict[str, Any] = {}
    for tag in ("local", "local-b"):
        kcure("report", "--release", tag)
        page = Keys()
        page.feed((home / "reports" / "releases" / tag / "index.html").read_text(encoding="utf-8"))
        text = kcure("releases", "show", tag, "--json")
        out[tag] = {"page": page.figures, "view": json.loads(text[text.index("\n{") + 1 :]), "text": text}
    out["diff"] = json.loads(kcure("diff", "local", "local-b", "--json"))
    yield out
    shutil.rmtree(home / "protected" / "r1b", ignore_errors=True)


def _system(out: dict[str, Any]) -> tuple[dict[str, float | None], list[dict[str, float]], set[str]]:
    """Every figure of both releases and the diff ({name: value, None where unknown}), the relations
    between them, and the figures published masked."""
    values: dict[str, float | None] = {}
    masked: set[str] = set()
    rel: list[dict[str, float]] = []

    def put(name: str, v: Any, published: bool = True) -> None:
        if v in (None, ""):
            values.setdefault(name, None)
            if published:
                masked.add(name)
        else:
            assert values.get(name) in (None, float(v)), f"{name} is shown as two values"
            values[name] = float(v)

    for tag in ("local", "local-b"):
        fig = out[tag]["view"]["figures"]
        sites, years = list(fig["cancers_by_site"]), list(fig["cancers_by_year"])
        for key, v in out[tag]["page"].items():
            if key.split("|")[0] in ("year", "site", "cell"):
                put(f"{tag}|{key}", v)
        for y, v in fig["cancers_by_year"].items():
            put(f"{tag}|year|{y}", v)
        for site, v in fig["cancers_by_site"].items():
            put(f"{tag}|site|{site}", v)
        for table, v in fig["rows"].items():
            put(f"{tag}|rows|{table}", v)
            for y, n in fig["rows_by_year"].get(table, {}).items():
                put(f"{tag}|row_year|{table}|{y}" if table != "RGST" else f"{tag}|year|{y}", n)
        for site in sites:  # the cells the page does not show are unknowns, never constants
            for y in years:
                put(f"{tag}|cell|{site}|{y}", None, published=False)
        for y in years:
            rel.append({f"{tag}|year|{y}": -1.0, **{f"{tag}|cell|{site}|{y}": 1.0 for site in sites}})
        for site in sites:
            rel.append({f"{tag}|site|{site}": -1.0, **{f"{tag}|cell|{site}|{y}": 1.0 for y in years}})
        rel.append({f"{tag}|rows|RGST": -1.0, **{f"{tag}|year|{y}": 1.0 for y in years}})
        rel.append({f"{tag}|rows|RGST": -1.0, **{f"{tag}|site|{site}": 1.0 for site in sites}})
        for table, by_year in fig["rows_by_year"].items():
            if table != "RGST":
                rel.append({f"{tag}|rows|{table}": -1.0, **{f"{tag}|row_year|{table}|{y}": 1.0 for y in by_year}})
    for t in out["diff"]["tables"]:  # what the diff publishes: both figures, and a change b - a
        name = t["table"]
        entries = [(f"rows|{name}", t["rows"], t["change"])]
        for y, v in t["by_year"].items():
            entries.append((f"year|{y}" if name == "RGST" else f"row_year|{name}|{y}", v["rows"], v["change"]))
        for key, (a, b), change in entries:
            put(f"local|{key}", a)
            put(f"local-b|{key}", b)
            put(f"change|{key}", change)
            rel.append({f"local-b|{key}": 1.0, f"local|{key}": -1.0, f"change|{key}": -1.0})
    return values, rel, masked


def _determined(values: dict[str, float | None], relations: list[dict[str, float]]) -> set[str]:
    """The unknowns the relations fix: e_i lies in the row space of the unknowns' coefficients."""
    unknown = sorted(k for k, v in values.items() if v is None)
    index = {k: i for i, k in enumerate(unknown)}
    rows = [[r.get(k, 0.0) for k in unknown] for r in relations if any(k in index for k in r)]
    if not rows:
        return set()
    a = np.array(rows)
    rank = np.linalg.matrix_rank(a)
    fixed = set()
    for k, i in index.items():
        e = np.zeros((1, len(unknown)))
        e[0, i] = 1.0
        if np.linalg.matrix_rank(np.vstack([a, e])) == rank:
            fixed.add(k)
    return fixed


def test_no_masked_figure_is_determined_by_two_reports_their_views_and_their_diff(outputs) -> None:  # type: ignore[no-untyped-def]
    values, relations, masked = _system(outputs)
    assert len(masked) > 5, "the releases must have masked figures for this test to mean much"
    assert sum(v is not None for v in values.values()) > 50
    assert _determined(values, relations) & masked == set()


def test_no_count_between_one_and_the_threshold_appears_anywhere(outputs) -> None:  # type: ignore[no-untyped-def]
    threshold = outputs["local"]["view"]["figures"]["threshold"]

    def counts(x: Any) -> Iterator[float]:
        if isinstance(x, dict):
            for v in x.values():
                yield from counts(v)
        elif isinstance(x, list):
            for v in x:
                yield from counts(v)
        elif isinstance(x, int | float) and not isinstance(x, bool):
            yield float(x)

    def small(x: Any) -> list[float]:
        return [v for v in counts(x) if 0 < abs(v) < threshold]

    names = ("cancers_by_year", "cancers_by_site", "cancers_by_site_and_year", "rows", "rows_by_year", "people")
    for tag in ("local", "local-b"):
        fig = outputs[tag]["view"]["figures"]
        for name in names:
            assert not small(fig[name]), name
        privacy = outputs[tag]["view"]["privacy"]
        assert not small([privacy["people_dropped"], privacy["min_class_before"], privacy["rows_dropped"]])
        assert not small([r["people"] for r in privacy["recoded"]])
        assert not small([float(v) for k, v in outputs[tag]["page"].items() if v]), tag
    for t in outputs["diff"]["tables"]:
        assert not small([t["rows"], t["change"], t["by_year"]]), t["table"]
    # the raw manifest keeps its exact figures for the custodian: the views above are what leaves
    assert "linkage_report" not in outputs["local"]["view"] and "staged_rows" not in outputs["local"]["text"]

"""The HTML release report shows the release's own numbers; `kcure diff` reports the real difference."""

from __future__ import annotations

import copy
import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from kcure import cli
from kcure.access import diff as D
from kcure.access import figures, report
from kcure.access import query as access
from kcure.core.disclosure import rounded
from kcure.stages import publish as publishing
from tests.build_fixture import Published, copy_build

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]


class Marks(HTMLParser):
    """Collects every plot's marks: {svg id: [(attrs of each mark or cell)]}, and every link."""

    def __init__(self) -> None:
        super().__init__()
        self.plots: dict[str, list[dict[str, str]]] = {}
        self.links: list[str] = []
        self._svg: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "svg" and "plot" in a.get("class", ""):
            self._svg = a["id"]
            self.plots[self._svg] = []
        elif tag == "g" and self._svg and a.get("class") in ("mark", "cell"):
            self.plots[self._svg].append(a)
        elif tag == "a":
            self.links.append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None


def _rewrite(table_dir: Path, fn) -> None:  # type: ignore[no-untyped-def]
    for f in sorted(table_dir.glob("*.parquet")):
        pq.write_table(fn(pq.read_table(f)), f)
        (f.parent / f".{f.name}.crc").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def two_releases(local_release: Published, cfg):  # type: ignore[no-untyped-def]
    """'local': build t1 through every gate. 2025.2: the same minus the 2019 deaths, plus a VCN column."""
    c1, first = local_release.cfg, local_release.release
    home = c1.home
    copy_build(home, "r1", home, "r2", zones=("protected",))
    _rewrite(
        home / "protected" / "r2" / "DEATH",
        lambda t: t.filter(pc.invert(pc.starts_with(t["DREGDATE"], "2019"))),
    )
    _rewrite(
        home / "protected" / "r2" / "VCN", lambda t: t.append_column("VCN_SITE", pa.nulls(t.num_rows, pa.string()))
    )
    raw = copy.deepcopy(cfg.raw)
    raw["library.yaml"]["tables"]["VCN"]["columns"].append(
        {"name": "VCN_SITE", "type": "string", "meaning": "site", "rule": "copy", "from": "VCNCD"}
    )
    c2 = dataclasses.replace(cfg, home=home, raw=raw)
    second = publishing.publish(c2, "r2", "2025.2", publishing.manifest_for(c2, "r2"))
    return c1, c2, first, second


def test_report_plots_show_the_release_numbers(two_releases) -> None:  # type: ignore[no-untyped-def]
    c1, _, first, _ = two_releases
    path = report.render(c1, "local")
    page = path.read_text(encoding="utf-8")
    marks = Marks()
    marks.feed(page)
    assert {"cohort-by-year", "cohort-by-site", "cohort-year-site", "linkage-rate", "k-distribution"} <= set(
        marks.plots
    )

    threshold, base = c1.privacy.min_cell_count, c1.privacy.rounding  # conf/privacy.yaml export

    def check(sql: str, plot: str, label=lambda m: m["data-label"]) -> None:  # type: ignore[no-untyped-def]
        """Each mark shows the release's count rounded to the base, or is masked; a masked mark is never
        more than what disclosure control needs: the few people, plus those that stop a subtraction."""
        counts = {str(x): (n, p) for x, n, p in access.query(c1, sql, "local").fetchall()}
        shown = {label(m): m["data-value"] for m in marks.plots[plot]}
        assert set(shown) == set(counts)
        for x, value in shown.items():
            n, people = counts[x]
            if 0 < people < threshold:
                assert value == "", (plot, x)  # a few people: always masked
            elif value != "":
                assert float(value) == rounded(n, base), (plot, x, value, n)
        assert sum(v != "" for v in shown.values()) > len(shown) / 2, shown

    check(f"select {figures.YEAR_SQL}, count(*), count(distinct SN_KEY) from RGST group by 1", "cohort-by-year")
    site = f"select {figures.SITE_SQL}, count(*), count(distinct SN_KEY) from RGST group by 1"
    check(site, "cohort-by-site", lambda m: m["data-label"].split(" ")[0])

    # linkage: each cell is linked / (linked + unlinked) of that feed-year in the manifest's report
    cells = {(c["data-row"], c["data-col"]): c["data-value"] for c in marks.plots["linkage-rate"]}
    assert len(cells) == len(first.manifest["linkage_report"])
    for r in first.manifest["linkage_report"]:
        linked = r["linked_rrn"] + r["linked_secondary"] + r["linked_via_mid"]
        few = any(0 < r[k] < threshold for k in ("linked_persons", "unlinked_persons"))
        want = round(100.0 * linked / (linked + r["unlinked"]), 2) if linked + r["unlinked"] and not few else None
        got = cells[(r["_feed"], str(r["_year"]))]
        assert (float(got) if got else None) == want, (r["_feed"], r["_year"])

    dist = first.manifest["privacy"]["class_size_distribution"]
    assert {m["data-label"]: int(float(m["data-value"])) for m in marks.plots["k-distribution"]} == dist
    assert min(int(s.rstrip("+")) for s in dist) >= first.manifest["privacy"]["k"]

    # year x site: no count of 1 to threshold-1 is printed, and every printed count is a multiple of the base
    grid = marks.plots["cohort-year-site"]
    assert all(c["data-value"] == "" or float(c["data-value"]) % base == 0 for c in grid)

    # Data Docs are linked and rendered for every library table (T200 included: GX once dropped them)
    docs = [h for h in marks.links if h.endswith("data_docs/index.html")]
    assert docs and (path.parent / docs[0]).resolve().is_file()
    validations = (path.parent / docs[0]).resolve().parent / "validations" / "library"
    assert {p.name for p in validations.iterdir()} >= set(first.snapshots)

    keys = access.query(c1, "select SN_KEY from RGST", "local").fetchall()
    assert not any(k[0] in page for k in keys), "a pseudonymous key leaked into the report"
    assert "<script" not in page  # a static page: nothing to execute in the secure environment


def test_diff_reports_the_real_difference(two_releases, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    c1, c2, first, _ = two_releases
    removed = access.query(c1, "select count(*) from DEATH where DREGDATE like '2019%'", "local").fetchall()[0][0]
    assert removed > 0
    d = D.diff(c2, "local", "2025.2")
    t = {x.name: x for x in d.tables}
    deaths, base = first.manifest["row_counts"]["DEATH"], c2.privacy.rounding
    assert t["DEATH"].rows == (rounded(deaths, base), rounded(deaths - removed, base))
    assert set(t["DEATH"].by_year) == {"2019"} and t["DEATH"].by_year["2019"][1] == 0
    assert t["DEATH"].by_year["2019"][0] in (None, rounded(removed, base))  # masked where few people died
    assert t["VCN"].schema == ["+ VCN_SITE string"] and t["VCN"].rows[0] == t["VCN"].rows[1]
    assert not t["DEATH"].schema
    unchanged = {n for n, x in t.items() if not x.changed}
    assert unchanged == set(first.snapshots) - {"DEATH", "VCN"}
    assert D.diff(c2, "2025.2", "2025.2").changed is False

    # the older release still reads back with its own schema
    assert "VCN_SITE" not in access.query(c2, "select * from VCN", "local").columns
    assert "VCN_SITE" in access.query(c2, "select * from VCN", "2025.2").columns

    monkeypatch.setenv("KCURE_HOME", str(c2.home))
    monkeypatch.setenv("KCURE_CONF", str(_conf_dir(c2, c2.home / "conf2")))
    assert cli.main(["diff", "local", "2025.2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"DEATH\s+[\d,]+\s+[\d,]+\s+-[\d,]+", out), out
    assert "schema + VCN_SITE string" in out and re.search(r"2019\s+(<5|[\d,]+)\s+->\s+0", out)


def test_releases_show_prints_the_manifest(two_releases, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    c1, _, first, _ = two_releases
    monkeypatch.setenv("KCURE_HOME", str(c1.home))
    assert cli.main(["releases", "show", "local"]) == 0
    out = capsys.readouterr().out
    assert "release local (build r1)" in out
    assert f"{rounded(first.manifest['row_counts']['T200'], 5):,} rows" in out


def _conf_dir(cfg, where: Path) -> Path:  # type: ignore[no-untyped-def]
    import yaml

    where.mkdir(exist_ok=True)
    for name, content in cfg.raw.items():
        (where / name).write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return where

"""The report's SVG marks: numbers where shown, nothing where a count is masked."""

from __future__ import annotations

import re

import pytest

from kcure.access.report import bar_chart, heatmap

pytestmark = pytest.mark.unit


def test_masked_bars_carry_no_number() -> None:
    svg = bar_chart("c", "t", [("2019", 12.0), ("2020", None)], y_label="n", masked="<5")
    marks = re.findall(r'<g class="mark" data-label="([^"]*)" data-value="([^"]*)">(.*?)</g>', svg)
    assert [(label, value) for label, value, _ in marks] == [("2019", "12.0"), ("2020", "")]
    texts = [t for t in re.findall(r">([^<>]*)<", marks[1][2]) if t]
    assert texts == ["2020: &lt;5", "&lt;5", "2020"]  # the label and the mask: no count anywhere


def test_heatmap_masks_cells_and_keeps_their_position() -> None:
    svg = heatmap("h", "t", ["C16"], ["2019", "2020"], {("C16", "2019"): 7.0, ("C16", "2020"): None},
                  text={("C16", "2019"): "7", ("C16", "2020"): "<5"})  # fmt: skip
    cells = re.findall(r'<g class="cell" data-row="C16" data-col="(\d+)" data-value="([^"]*)">', svg)
    assert cells == [("2019", "7.0"), ("2020", "")]
    assert 'class="masked"' in svg

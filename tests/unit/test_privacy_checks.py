"""The check stage's reading of ``_privacy.json``: a release that dropped everyone is refused, even when
every remaining class (there is none) satisfies k."""

from __future__ import annotations

from typing import Any

from kcure.stages.check import _privacy_checks


def _privacy(people: int, dropped: int) -> dict[str, Any]:
    return {
        "k": 5,
        "success": True,
        "people": people,
        "people_dropped": dropped,
        "min_class_after": 0 if dropped == people else 5,
        "l_diversity": {"attribute": "SAIN1", "l": 2, "required": 2},
    }


def _failed(privacy: dict[str, Any]) -> list[str]:
    return [c.check for c in _privacy_checks(privacy) if not c.success and c.severity == "critical"]


def test_a_release_that_drops_every_person_fails_the_gate() -> None:
    assert _failed(_privacy(40, 40)) == ["the release keeps people"]


def test_a_release_that_keeps_people_passes() -> None:
    assert _failed(_privacy(500, 2)) == []
    assert _failed(_privacy(0, 0)) == []  # nothing staged: nothing to keep, the accounting gates speak

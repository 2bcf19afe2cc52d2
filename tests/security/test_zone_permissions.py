"""Least privilege on every zone, proved as an unprivileged OS user (``nobody``): of everything under
KCURE_HOME (Spark's and Airflow's folders included) and the secrets file, another user can read the
release and its reports (and only as a member of the release's group), and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.security.conftest import RELEASE_GROUP, Secured, readable_as

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _files(s: Secured) -> list[Path]:
    return sorted([p for p in s.home.rglob("*") if p.is_file()] + [s.secrets])


def _allowed(s: Secured) -> set[Path]:
    """The release (its tables in the warehouse, the catalog) and its reports (the page, the gates' Data Docs)."""
    roots = [
        s.home / "warehouse",
        s.home / "catalog",
        s.home / "reports" / "releases" / s.release,
        s.home / "reports" / "releases" / s.build / "data_docs",
    ]
    return {p for r in roots for p in r.rglob("*") if p.is_file()}


def test_only_the_release_and_its_reports_are_readable_by_the_release_group(secured: Secured) -> None:
    files = _files(secured)
    zones = {p.relative_to(secured.home).parts[0] for p in files if p.is_relative_to(secured.home)}
    # the folders the engines write on the side are there to be checked, not assumed
    assert {
        "landing",
        "staging",
        "quarantine",
        "pseudonymized",
        "linked",
        "protected",
        "spark-events",
        "airflow",
    } <= zones
    assert (secured.home / "airflow" / "airflow.db").exists()
    allowed = _allowed(secured)
    assert any(p.suffix == ".parquet" for p in allowed) and any(p.name == "catalog.db" for p in allowed)
    got = readable_as("nobody", files, [RELEASE_GROUP])
    assert sorted(map(str, got - allowed)) == []  # nothing identifying, nothing that leads back
    assert got == allowed  # and the release is really readable to its group


def test_outside_the_release_group_nothing_at_all_is_readable(secured: Secured) -> None:
    assert readable_as("nobody", _files(secured)) == set()


def test_a_release_person_cannot_be_followed_back_to_an_identity(secured: Secured) -> None:
    """The attack that worked before: release T200.MID joined to pseudonymized/, its _file/_line to the
    landing line holding the RRN and name. Every file that path needs is out of reach."""
    path = [
        *secured.home.glob(f"pseudonymized/{secured.build}/hira_t200/**/*.parquet"),
        *secured.home.glob(f"linked/{secured.build}/_lineage/**/*.parquet"),
        *secured.home.glob("landing/hira_t200/*/d*/*.csv.gz"),
        *secured.home.glob("landing/_truth/**/*.parquet"),
        *secured.home.glob("staging/kccr_registry/*/v-*/*.parquet"),
        *secured.home.glob(f"protected/{secured.build}/**/*.parquet"),
    ]
    assert len(path) > 20
    assert readable_as("nobody", path, [RELEASE_GROUP]) == set()
    release_t200 = list(secured.home.glob("warehouse/library/T200/data/**/*.parquet"))
    assert release_t200 and readable_as("nobody", release_t200, [RELEASE_GROUP]) == set(release_t200)

"""A research project's application is checked against the library, and every problem is named with
the file, the key and the rule, all in one round."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import yaml

from kcure.projects.application import ApplicationError, parse_application
from tests.conftest import REPO

TODAY = date(2026, 11, 30)
EXAMPLE = REPO / "conf" / "applications" / "kc20261130001.yaml"
USERS = {"kcure-pi", "kcure-analyst"}


def _parse(cfg: Any, doc: dict[str, Any], name: str = "app.yaml") -> Any:
    data = yaml.safe_dump(doc).encode()
    return parse_application(data, name, cfg.library, cfg.privacy.window, today=TODAY, user_exists=lambda u: u in USERS)


def _example() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))


def _problems(cfg: Any, doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ApplicationError) as e:
        _parse(cfg, doc)
    return e.value.problems


def test_the_example_application_is_valid_and_read_as_written(cfg: Any) -> None:
    app = _parse(cfg, _example())
    assert app.project == "kc20261130001" and app.people == ("kcure-pi", "kcure-analyst")
    assert app.tables["RGST"].columns == tuple(cfg.library.table("RGST").column_names)  # columns: all
    assert app.tables["BFC"].columns[:2] == ("SN_KEY", "STD_YYYY") and app.tables["BFC"].years == (2015, 2020)
    assert app.tables["DEATH"].years == cfg.privacy.window  # no years: every year of the library
    assert app.cohort.sites == ("C16",) and app.cohort.years == (2015, 2020) and app.cohort.age_bands == ((20, 89),)
    assert app.cohort.site_matches("C169") and app.cohort.site_matches("C16.2") and not app.cohort.site_matches("C18")
    assert len(app.sha256) == 64


def test_every_problem_is_named_with_file_key_and_rule_in_one_round(cfg: Any) -> None:
    doc = _example()
    doc["tables"]["T999"] = {"columns": "all"}
    doc["tables"]["BFC"]["columns"].append("INCOME")
    doc["tables"]["T200"]["years"] = [2010, 2016]
    doc["expires"] = "2026-11-01"
    doc["cohort"]["sites"] = ["C16", "stomach", "C20-C18"]
    doc["analysts"].append("mallory")
    doc["colour"] = "blue"
    problems = _problems(cfg, doc)
    expected = [
        "app.yaml tables.T999: unknown table",
        "app.yaml tables.BFC.columns[6]: 'INCOME' is not a column of BFC",
        "app.yaml tables.T200.years: [2010, 2016] is outside the library's years 2012-2020",
        "app.yaml expires: 2026-11-01 is not in the future",
        "app.yaml cohort.sites[1]: 'stomach' is not an ICD-10 code",
        "app.yaml cohort.sites[2]: block C20-C18 ends before it starts",
        "app.yaml analysts[1]: no OS account 'mallory' here",
        "app.yaml pledges: mallory has no signed security pledge",
        "app.yaml colour: unknown setting",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected), problems


def test_a_restricted_column_needs_its_plan(cfg: Any) -> None:
    doc = _example()
    doc["tables"]["T530"] = {"columns": ["MID", "GNL_CD"]}
    assert _problems(cfg, doc) == [
        "app.yaml tables.T530.columns: GNL_CD needs plans.drug_use (restricted by the catalog)"
    ]
    doc["plans"] = {"drug_use": "Ingredient-level exposure to fluoropyrimidines, reviewed by the drug committee"}
    assert _parse(cfg, doc).tables["T530"].columns == ("MID", "GNL_CD")


def test_ids_dates_and_approvals_are_checked(cfg: Any) -> None:
    doc = _example()
    doc["project"] = "kc20261399001"  # month 13
    doc["irb"] = {"number": "", "approved": "2027-01-01"}
    doc["pledges"]["kcure-pi"] = "yesterday"
    doc["date_precision"] = "hour"
    doc["cohort"]["sample"] = {"fraction": 1.5, "strata": ["SEX", "HEIGHT"], "seed": "x"}
    problems = _problems(cfg, doc)
    for line in [
        "app.yaml project: kc20261399001 does not start with a date",
        "app.yaml irb.number: missing",
        "app.yaml irb.approved: 2027-01-01 is in the future",
        "app.yaml pledges.kcure-pi: 'yesterday' is not a date",
        "app.yaml date_precision: 'hour' is not one of day, month",
        "app.yaml cohort.sample.fraction: expected a fraction in (0, 1]",
        "app.yaml cohort.sample.strata[1]: 'HEIGHT' is not one of SEX",
        "app.yaml cohort.sample.seed: expected an integer",
    ]:
        assert any(p.startswith(line) for p in problems), (line, problems)


def test_a_file_that_is_not_yaml_names_its_line(cfg: Any) -> None:
    with pytest.raises(ApplicationError) as e:
        parse_application(b"project: kc\n  title: [\n", "bad.yaml", cfg.library, cfg.privacy.window)
    assert e.value.problems == ["bad.yaml line 2: not valid UTF-8 YAML"]


def test_histology_stage_and_the_date_shift_are_read_and_checked(cfg: Any) -> None:
    doc = _example()
    doc["cohort"].update(histology=["8140-8389", 8070], stage=[2, "3"])
    app = _parse(cfg, doc)
    assert app.cohort.histology == (("8140", "8389"), ("8070", "8070")) and app.cohort.stage == ("2", "3")
    assert app.date_shift is True  # the default
    assert app.cohort.site_ranges() == [("C16", "C16")]
    doc["cohort"].update(histology=["8389-8140", "adeno"], stage=["5"])
    doc["date_shift"] = "yes"
    problems = _problems(cfg, doc)
    assert "app.yaml cohort.histology[0]: range 8389-8140 ends before it starts" in problems
    assert any(
        p.startswith("app.yaml cohort.histology[1]: 'adeno' is not an ICD-O-3 morphology code") for p in problems
    )
    assert any(p.startswith("app.yaml cohort.stage[0]: '5' is not a SEER stage") for p in problems)
    assert "app.yaml date_shift: 'yes' is not true or false" in problems

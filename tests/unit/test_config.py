from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from kcure.core.config import PATH_NAMES, ConfigError, load_config

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def test_every_path_derives_from_kcure_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KCURE_HOME", str(tmp_path / "one"))
    cfg = load_config(REPO / "conf")
    for name in PATH_NAMES:
        assert Path(cfg.path(name)).is_relative_to(tmp_path / "one"), name
    monkeypatch.setenv("KCURE_HOME", str(tmp_path / "two"))
    other = load_config(REPO / "conf")
    assert {other.path(n) for n in PATH_NAMES}.isdisjoint({cfg.path(n) for n in PATH_NAMES})


def test_default_home_is_var_under_the_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KCURE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_config(REPO / "conf").path("staging") == str(tmp_path / "var" / "staging")


def test_one_path_can_be_overridden_in_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    text = (conf / "pipeline.yaml").read_text(encoding="utf-8")
    (conf / "pipeline.yaml").write_text(text.replace("landing: landing ", "landing: /data/landing "), encoding="utf-8")
    monkeypatch.setenv("KCURE_HOME", str(tmp_path / "home"))
    cfg = load_config(conf)
    assert cfg.path("landing") == "/data/landing"
    assert cfg.path("staging") == str(tmp_path / "home" / "staging")


def test_environment_setting_selects_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KCURE_ENV", "production")
    cfg = load_config(REPO / "conf")
    assert cfg.environment == "production"
    assert cfg.path("landing").startswith("s3://")
    assert cfg.spark["master"] == "yarn"
    monkeypatch.setenv("KCURE_ENV", "nowhere")
    with pytest.raises(ConfigError, match="unknown environment 'nowhere'"):
        load_config(REPO / "conf")


def test_unknown_feed_is_rejected_loudly(cfg) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="unknown feed 'hira_t999'"):
        cfg.feed("hira_t999")


def test_conf_declares_the_ten_feeds_of_the_contract(cfg) -> None:  # type: ignore[no-untyped-def]
    assert set(cfg.feeds) == {
        "kccr_registry",
        "nhis_eligibility",
        "nhis_screening",
        "hira_t200",
        "hira_t300",
        "hira_t400",
        "hira_t530",
        "kostat_death",
        "kdca_covid_case",
        "kdca_vaccination",
    }
    death = cfg.feed("kostat_death")
    assert death.format == "fixed" and death.encoding == "cp949"
    assert all(c.width for c in death.columns)


def test_conf_holds_no_secrets() -> None:
    pattern = re.compile(r"(?i)(secret|password|token)\s*:\s*['\"]?[A-Za-z0-9+/=_-]{8,}")
    for f in (REPO / "conf").glob("*.yaml"):
        assert not pattern.search(f.read_text(encoding="utf-8")), f


def test_bad_column_type_names_file_and_column(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    text = (conf / "feeds.yaml").read_text(encoding="utf-8")
    (conf / "feeds.yaml").write_text(
        text.replace("{name: TX, type: string}", "{name: TX, type: blob}"), encoding="utf-8"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(conf)
    assert str(exc.value).startswith(
        f"{conf / 'feeds.yaml'} feeds.kccr_registry.columns[16].type: 'blob' is not one of"
    )


def _edited(tmp_path: Path, file: str, old: str, new: str) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf, dirs_exist_ok=True)
    text = (conf / file).read_text(encoding="utf-8")
    assert old in text, old
    (conf / file).write_text(text.replace(old, new), encoding="utf-8")
    return conf


@pytest.mark.parametrize(
    ("file", "old", "new", "where", "problem"),
    [
        (
            "privacy.yaml",
            "quasi_identifiers: [SEX, AGE, SIDO, DBYEAR, TCODE3]",
            "quasi_identifiers: [SEX, AGE, SIDO, DBYEAR, SITE]",
            "k_anonymity.quasi_identifiers[4]",
            "unknown quasi-identifier 'SITE'",
        ),
        (
            "privacy.yaml",
            "quasi_identifiers: [SEX, AGE, SIDO, DBYEAR, TCODE3]",
            "quasi_identifiers: [SEX, AGE, DBYEAR, TCODE3]",
            "recoding[3].column",
            "SIDO is not one of k_anonymity.quasi_identifiers",
        ),
        ("privacy.yaml", "  k: 5\n", "  k: five\n", "k_anonymity.k", "expected int, got str 'five'"),
        (
            "privacy.yaml",
            "  - {column: AGE, action: suppress}",
            "  - {column: DBYEAR, action: suppress}",
            "recoding[4]",
            "the diagnosis year cannot be hidden while claims keep day-level dates",
        ),
        (
            "privacy.yaml",
            "      - {column: RGST.AGE, as: age_band, year: DBYEAR}",
            "      - {column: RGST.AGE, as: age_band}",
            "k_anonymity.reveals.AGE[0].year",
            "an age_band needs year",
        ),
        (
            "privacy.yaml",
            "      - {column: T400.SICK_CD, as: diagnosis_code}",
            "      - {column: T400.SICK_CODE, as: diagnosis_code}",
            "k_anonymity.reveals.TCODE3[5].column",
            "T400.SICK_CODE is not a column of the library",
        ),
        (
            "privacy.yaml",
            "      - {column: BFC.SIDO, as: value}",
            "      - {column: BFC.SIDO, as: site_code}",
            "k_anonymity.reveals.SIDO[0].as",
            "'site_code' is not one of value",
        ),
        ("privacy.yaml", "  min_cell_count: 5", "  min_cell_count: 0", "export.min_cell_count", "must be a positive"),
        ("privacy.yaml", "width: 10}", "width: 7}", "recoding[1].width", "does not contain whole 5-year bands"),
        (
            "library.yaml",
            "{name: DBYEAR, type: int, from: FDX, rule: year,",
            "{name: DBYEAR, type: int, from: NAME, rule: year,",
            "tables.RGST.columns[1].from",
            "NAME is a direct identifier of kccr_registry: no rule may release it",
        ),
        (
            "library.yaml",
            "{name: YID, type: string, from: YKIHO, rule: substitute,",
            "{name: YID, type: string, from: YKIHO,",
            "tables.T200.columns[2].rule",
            "YKIHO is a source key of hira_t200: only rule substitute may release it",
        ),
        (
            "library.yaml",
            "{name: MID, type: string, rule: substitute, meaning: claim key,",
            "{name: MID, type: string, rule: substitute, label: CLAIM, meaning: claim key,",
            "tables.T300.columns.MID",
            "the same key must get the same substitute",
        ),
        (
            "library.yaml",
            "rule: kcd, meaning: ICD-10",
            "rule: kcdd, meaning: ICD-10",
            "tables.RGST.columns[7].rule",
            "'kcdd' is not one of",
        ),
        ("library.yaml", "  table: RGST\n", "  table: REGISTRY\n", "cohort.table", "'REGISTRY' is not one of"),
        (
            "feeds.yaml",
            "    person_via: MID\n",
            "    person_via: MIDX\n",
            "feeds.hira_t300.person_via",
            "'MIDX' is not a column",
        ),
    ],
)
def test_a_bad_rule_fails_at_load_naming_the_file_and_the_key(  # type: ignore[no-untyped-def]
    tmp_path: Path, file: str, old: str, new: str, where: str, problem: str
) -> None:
    conf = _edited(tmp_path, file, old.replace("\\n", "\n"), new.replace("\\n", "\n"))
    with pytest.raises(ConfigError) as exc:
        load_config(conf)
    assert str(exc.value).startswith(f"{conf / file} {where}: "), str(exc.value)
    assert problem in str(exc.value)


def test_the_typed_rules_are_what_the_files_say(cfg) -> None:  # type: ignore[no-untyped-def]
    assert cfg.privacy.k == 5 and cfg.privacy.min_cell_count == 5 and cfg.privacy.l == 2
    assert cfg.privacy.quasi_identifiers == ("SEX", "AGE", "SIDO", "DBYEAR", "TCODE3")
    assert [s.label for s in cfg.privacy.recoding][:2] == ["site_to_block:TCODE3", "age_to_band:AGE"]
    assert cfg.library.by_feed["hira_t300"] == "T300" and cfg.library.cohort.table == "RGST"
    yid = next(c for c in cfg.library.tables["T200"].columns if c.name == "YID")
    assert (yid.source, yid.rule) == ("YKIHO", "substitute")
    assert cfg.feed("hira_t300").person_via == "MID" and not cfg.feed("hira_t300").names_person
    assert cfg.feed("kostat_death").names_person


def test_configuration_is_parsed_by_libyaml_as_plain_data_like_safe_load() -> None:
    import yaml

    from kcure.core.config import SAFE_LOADER, safe_load

    assert SAFE_LOADER is yaml.CSafeLoader  # the wheels ship libyaml: the fast parser is the one used
    for f in sorted((REPO / "conf").glob("*.yaml")):
        text = f.read_text(encoding="utf-8")
        assert safe_load(text) == yaml.safe_load(text), f.name
    with pytest.raises(yaml.constructor.ConstructorError):  # no tag that builds objects or runs code
        safe_load("!!python/object/apply:os.getcwd []")

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
    with pytest.raises(ConfigError, match=r"feeds.kccr_registry.TX: unknown type 'blob'"):
        load_config(conf)

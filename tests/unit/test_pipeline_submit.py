"""What spark-submit is given: nothing secret on its command line or in its environment."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kcure import pipeline

pytestmark = pytest.mark.unit


def _cluster(cfg):  # type: ignore[no-untyped-def]
    raw = {**cfg.raw}
    pl = {**raw["pipeline.yaml"], "defaults": {**raw["pipeline.yaml"]["defaults"]}}
    pl["defaults"]["spark"] = {
        **pl["defaults"]["spark"],
        "master": "spark://127.0.0.1:7077",
        "conf": {"spark.hadoop.fs.s3a.secret.key": "s3-secret-value", "spark.x.path": "C:\\tmp"},
    }
    raw["pipeline.yaml"] = pl
    return dataclasses.replace(cfg, raw=raw)


def test_spark_settings_go_to_a_properties_file_not_the_command_line(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = dataclasses.replace(_cluster(cfg), home=tmp_path)
    assert pipeline.is_cluster(c)
    props = tmp_path / "spark.properties"
    cmd, conf = pipeline.spark_submit_command(c, "link", "b1", props, truth="/t")
    line = " ".join(cmd)
    assert "s3-secret-value" not in line and "--conf" not in line
    assert cmd[cmd.index("--properties-file") + 1] == str(props)
    assert cmd[cmd.index("--master") + 1] == "spark://127.0.0.1:7077"
    assert cmd[-5:] == [str(pipeline.jobs_dir() / "link.py"), "--build", "b1", "--truth", "/t"]
    assert conf["spark.hadoop.fs.s3a.secret.key"] == "s3-secret-value"
    assert b"spark.x.path C:\\\\tmp\n" in pipeline._properties(conf)  # backslashes survive Java's parser


def test_submit_hands_each_stage_only_its_own_secrets_as_files(cfg, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    c = dataclasses.replace(_cluster(cfg), home=tmp_path)
    linkage, library = "L" * 40, "B" * 40
    monkeypatch.setenv("KCURE_LINKAGE_SECRET", linkage)
    monkeypatch.setenv("KCURE_LIBRARY_SECRET", library)
    monkeypatch.setenv("AIRFLOW_CONN_KCURE_LINKAGE_SECRET", "generic://:x@")
    seen: dict[str, object] = {}
    real_run = subprocess.run

    def fake_run(cmd, *args, env=None, **kw):  # type: ignore[no-untyped-def]
        if not str(cmd[0]).endswith("spark-submit"):
            return real_run(cmd, *args, env=env, **kw)
        seen["cmd"], seen["env"] = cmd, env
        seen["files"] = {
            k: (Path(v).read_bytes(), Path(v).stat().st_mode & 0o777)
            for k, v in env.items()
            if k.startswith("KCURE_") and k.endswith("_FILE")
        }
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(pipeline.subprocess, "run", fake_run)
    pipeline.submit(c, "link", "b1")
    env = seen["env"]
    assert isinstance(env, dict)
    assert not [k for k in env if "SECRET" in k and not k.endswith("_FILE")]
    assert seen["files"] == {"KCURE_LIBRARY_SECRET_FILE": (library.encode(), 0o600)}  # link never sees the linkage key
    assert linkage not in " ".join(seen["cmd"]) and library not in " ".join(seen["cmd"])  # type: ignore[arg-type]
    assert not Path(env["KCURE_LIBRARY_SECRET_FILE"]).exists()  # removed when spark-submit ends

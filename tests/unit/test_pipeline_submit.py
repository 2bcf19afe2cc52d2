"""What spark-submit is given: nothing secret on its command line or in its environment, and each
stage only the secrets the stage model grants it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from kcure import cluster, pipeline
from tests.conftest import with_pipeline

pytestmark = pytest.mark.unit


def _cluster(cfg):  # type: ignore[no-untyped-def]
    conf = {"spark.hadoop.fs.s3a.secret.key": "s3-secret-value", "spark.x.path": "C:\\tmp"}
    return with_pipeline(cfg, spark={"master": "spark://127.0.0.1:7077", "conf": conf})


def test_spark_settings_go_to_a_properties_file_not_the_command_line(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    c = dataclasses.replace(_cluster(cfg), home=tmp_path)
    assert cluster.is_cluster(c)
    props = tmp_path / "spark.properties"
    cmd, conf = cluster.spark_submit_command(c, "link", ["--build", "b1", "--truth", "/t"], props)
    line = " ".join(cmd)
    assert "s3-secret-value" not in line and "--conf" not in line
    assert cmd[cmd.index("--properties-file") + 1] == str(props)
    assert cmd[cmd.index("--master") + 1] == "spark://127.0.0.1:7077"
    assert cmd[cmd.index("--name") + 1] == "kcure-link-b1"
    assert cmd[-5:] == [str(cluster.jobs_dir() / "link.py"), "--build", "b1", "--truth", "/t"]
    assert conf["spark.hadoop.fs.s3a.secret.key"] == "s3-secret-value"
    assert b"spark.x.path C:\\\\tmp\n" in cluster._properties(conf)  # backslashes survive Java's parser


@pytest.mark.parametrize(("stage", "files"), [("link", {"library"}), ("pseudonymize", {"linkage", "library"})])
def test_run_stage_submits_each_stage_with_only_its_own_secrets_as_files(  # type: ignore[no-untyped-def]
    cfg, tmp_path: Path, monkeypatch, stage: str, files: set[str]
) -> None:
    import subprocess

    c = dataclasses.replace(_cluster(cfg), home=tmp_path)
    linkage, library = "L" * 40, "B" * 40
    monkeypatch.setenv("KCURE_LINKAGE_SECRET", linkage)
    monkeypatch.setenv("KCURE_LIBRARY_SECRET", library)
    monkeypatch.setenv("AIRFLOW_CONN_KCURE_LINKAGE_SECRET", "generic://:x@")
    summaries = tmp_path / "reports" / "builds" / "b1"
    summaries.mkdir(parents=True)
    (summaries / "pseudonymize.json").write_text("{}")  # link needs pseudonymize to have completed
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
        (summaries / f"{stage}.json").write_text(json.dumps({"stage": stage}))  # what the child writes last
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(cluster.subprocess, "run", fake_run)
    summary = pipeline.run_stage(c, pipeline.Plan("b1", None, (stage,)), stage)
    assert summary == {"stage": stage}
    env = seen["env"]
    assert isinstance(env, dict)
    assert not [k for k in env if "SECRET" in k and not k.endswith("_FILE")]
    values = {"linkage": linkage.encode(), "library": library.encode()}
    want = {f"KCURE_{k.upper()}_SECRET_FILE": (values[k], 0o600) for k in files}
    assert seen["files"] == want  # link never sees the linkage key
    assert linkage not in " ".join(seen["cmd"]) and library not in " ".join(seen["cmd"])  # type: ignore[arg-type]
    assert not any(Path(env[k]).exists() for k in want)  # removed when spark-submit ends


def test_a_failed_submit_names_the_stage_and_its_log_never_its_output(cfg, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    c = dataclasses.replace(_cluster(cfg), home=tmp_path)
    monkeypatch.setenv("KCURE_LIBRARY_SECRET", "B" * 40)
    (tmp_path / "reports" / "builds" / "b1").mkdir(parents=True)
    (tmp_path / "reports" / "builds" / "b1" / "link.json").write_text("{}")

    def failing(cmd, *args, stdout=None, **kw):  # type: ignore[no-untyped-def]
        stdout.write("Py4JJavaError: ... 800101-1234560 ...\n")
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(cluster.subprocess, "run", failing)
    with pytest.raises(pipeline.StageFailed) as exc:
        pipeline.run_stage(c, pipeline.Plan("b1", None, ("protect",)), "protect")
    assert "protect of build b1 failed on spark://127.0.0.1:7077 (exit 1); see " in str(exc.value)
    assert "800101" not in str(exc.value)
    assert not (tmp_path / "reports" / "builds" / "b1" / "protect.json").exists()

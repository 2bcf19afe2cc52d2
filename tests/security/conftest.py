"""A KCURE_HOME made the way an operator makes one: the real commands, started with a permissive umask
(022), under a folder other users may enter, with Spark event logs, Airflow's database and a secrets file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, TEST_LIBRARY_SECRET, TEST_LINKAGE_SECRET

RELEASE_GROUP = "users"  # the group analysts' accounts belong to, for these tests


@dataclass
class Secured:
    base: Path  # a folder any user may enter
    home: Path  # KCURE_HOME
    conf: Path
    secrets: Path  # the owner-only secrets file
    env: dict[str, str]
    build: str = "b1"
    release: str = "r1"

    def kcure(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run([sys.executable, "-m", "kcure.cli", *args], env or self.env, check=check)


def _loose() -> None:
    os.umask(0o022)  # the caller's umask is permissive: the tool must not rely on it


def run(cmd: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=1500, preexec_fn=_loose)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd[3:6]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def secured() -> Iterator[Secured]:
    base = Path(tempfile.mkdtemp(prefix="kcure-secured-", dir="/tmp"))
    os.chmod(base, 0o755)
    home, conf = base / "home", base / "conf"
    shutil.copytree(REPO / "conf", conf)
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    defaults = pipeline["defaults"]
    defaults["access"]["release_group"] = RELEASE_GROUP
    defaults["spark"].update(
        {
            "driver_memory": "2g",
            "shuffle_partitions": 2,
            "conf": {"spark.eventLog.enabled": "true", "spark.eventLog.dir": (home / "spark-events").as_uri()},
        }
    )
    defaults["query"].update({"timeout_seconds": 3, "max_result_rows": 50})
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline), encoding="utf-8")
    secrets = base / "secrets.env"
    secrets.write_text(f"{TEST_LINKAGE_SECRET}\n", encoding="utf-8")
    os.chmod(secrets, 0o600)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KCURE_", "AIRFLOW"))},
        "KCURE_HOME": str(home),
        "KCURE_CONF": str(conf),
        "KCURE_LINKAGE_SECRET_FILE": str(secrets),
        "KCURE_LIBRARY_SECRET": TEST_LIBRARY_SECRET,
        "AIRFLOW_HOME": str(home / "airflow"),
    }
    s = Secured(base, home, conf, secrets, env)
    s.kcure("generate", "--patients", "150", "--seed", "5", "--out", str(home / "landing"))
    s.kcure("ingest", "--landing", str(home / "landing"))
    s.kcure("build", "--build", s.build, "--release", s.release, "--truth", str(home / "landing" / "_truth"))
    run([str(REPO / "scripts" / "airflow.sh"), "db", "migrate"], env)
    yield s
    shutil.rmtree(base, ignore_errors=True)


def readable_as(user: str, paths: list[Path], groups: list[str] | None = None) -> set[Path]:
    """The paths ``user`` (with ``groups`` besides its own) can open for reading, asked as that user."""
    if os.geteuid() != 0:
        pytest.skip("reading as another OS user needs root")
    script = 'while IFS= read -r p; do [ -r "$p" ] && printf "%s\\n" "$p"; done; exit 0'
    proc = subprocess.run(
        ["/bin/sh", "-c", script],
        input="\n".join(str(p) for p in paths) + "\n",
        capture_output=True,
        text=True,
        user=user,
        group="nogroup",
        extra_groups=groups or [],
        timeout=120,
        check=True,
    )
    return {Path(line) for line in proc.stdout.splitlines() if line}

"""Connection lookups treat only "no such connection" as absent: a secrets backend that fails is an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit
PROBE = """
from kcure.core import secrets
from kcure.stages.ingest.discover import s3_client
for what, call in (("secret", lambda: secrets.load("linkage")), ("s3", lambda: s3_client("kcure_landing"))):
    try:
        call()
        print(what, "ok")
    except Exception as exc:
        print(what, type(exc).__name__, exc)
"""


def _probe(tmp_path: Path, backend: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KCURE_", "AIRFLOW_CONN_", "AWS_"))}
    env.update({"AIRFLOW_HOME": str(tmp_path / "airflow"), "PYTHONPATH": str(REPO), "AWS_DEFAULT_REGION": "us-east-1"})
    if backend:
        env["AIRFLOW__SECRETS__BACKEND"] = backend
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.splitlines()


def test_a_denying_secrets_backend_is_an_error_not_a_missing_secret(tmp_path: Path) -> None:
    secret, s3 = _probe(tmp_path, "tests.secret_backends.DenyAll")
    assert secret == "secret AirflowSecretsBackendAccessDenied policy denies kcure_linkage_secret"
    assert s3 == "s3 AirflowSecretsBackendAccessDenied policy denies kcure_landing"


def test_without_a_backend_a_missing_connection_is_simply_absent(tmp_path: Path) -> None:
    secret, s3 = _probe(tmp_path, None)
    assert secret.startswith("secret SecretError the linkage secret is missing")
    assert s3 == "s3 ok"  # no connection: boto3's own environment is used

"""The image installs exactly the locked versions the project uses."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit


def _locked() -> dict[str, str]:
    lock = tomllib.loads((REPO / "uv.lock").read_text(encoding="utf-8"))
    return {p["name"]: p["version"] for p in lock["package"] if "version" in p}


def test_base_image_is_the_locked_airflow_on_python_311() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    m = re.search(r"^FROM apache/airflow:(\S+)-python(\S+)$", text, re.M)
    assert m, "the image must be based on the official apache/airflow image"
    assert m.group(1) == _locked()["apache-airflow"]
    assert m.group(2) == "3.11"
    assert re.search(r"^USER 50000$", text, re.M), "the image must run as the non-root airflow user"
    assert "--require-hashes -r /opt/kcure/requirements.lock" in text


def test_requirements_lock_is_the_export_of_uv_lock() -> None:
    uv = shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    exported = subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--no-emit-project", "--format", "requirements-txt", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    body = [ln for ln in exported.splitlines() if not ln.startswith("#")]
    committed = [
        ln for ln in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines() if not ln.startswith("#")
    ]
    assert body == committed, (
        "requirements.lock is stale: run `uv export --frozen --no-dev --no-emit-project -o requirements.lock`"
    )
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", "\n".join(body), re.M))
    locked = _locked()
    for name in ("apache-airflow", "pyspark", "great-expectations", "pyiceberg", "pandas"):
        assert pins[name] == locked[name]


def test_image_points_the_installed_package_at_the_copied_folders() -> None:
    """Installed into site-packages, the package cannot find conf/, jobs/ or expectations/ next to
    itself: the image must name each folder, and copy it there."""
    import re

    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    copied = set(re.findall(r"^COPY .* (/opt/kcure/\w+)$", text, flags=re.M))
    for var, folder in (("KCURE_CONF", "conf"), ("KCURE_JOBS_DIR", "jobs"), ("KCURE_EXPECTATIONS", "expectations")):
        assert re.search(rf"\b{var}=/opt/kcure/{folder}\b", text), var
        assert f"/opt/kcure/{folder}" in copied, folder
        assert (REPO / folder).is_dir()

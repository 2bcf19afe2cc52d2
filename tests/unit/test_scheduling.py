"""How `make test` splits the suite over its xdist workers: files that share an expensive session
fixture run on one worker, so the fixture is made once per run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_UNITS

pytestmark = pytest.mark.unit


def test_every_file_using_the_secured_home_is_in_its_work_unit() -> None:
    users = set()
    for path in (REPO / "tests").rglob("test_*.py"):
        if re.search(r"def test_\w+\([^)]*\bsecured\b", path.read_text(encoding="utf-8")):
            users.add(path.relative_to(REPO).as_posix())
    assert users, "no test takes the secured fixture: the pattern no longer finds them"
    assert users == {f for f, unit in SHARED_UNITS.items() if unit == "secured"}


def test_files_of_one_unit_run_on_one_worker_under_dist_loadfile(tmp_path: Path) -> None:
    """A real two-worker run: without the scheduler the two files would be the first two work units,
    and xdist hands the first unit to one worker and the second to the other."""
    shared = sorted(f for f, unit in SHARED_UNITS.items() if unit == "secured")
    out = tmp_path / "ran"
    out.mkdir()
    body = (
        "import os, pathlib\n\n"
        "def test_where():\n"
        "    (pathlib.Path(os.environ['RAN']) / '{i}').write_text(os.environ['PYTEST_XDIST_WORKER'])\n"
    )
    files = [*shared, "tests/zz/test_other.py", "tests/zz/test_more.py"]
    for i, f in enumerate(files):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text(body.format(i=i), encoding="utf-8")
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_xdist_make_scheduler  # noqa: F401\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAN": str(out)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "tests")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = {files[int(p.name)]: p.read_text() for p in out.iterdir()}  # file -> the worker that ran it
    assert len(ran) == 4, (ran, proc.stdout[-3000:])
    assert ran[shared[0]] == ran[shared[1]], ran
    assert {ran["tests/zz/test_other.py"], ran["tests/zz/test_more.py"]} - {ran[shared[0]]}, ran  # both workers ran

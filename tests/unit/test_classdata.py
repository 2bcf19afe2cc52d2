"""The class-data archive a local stage's JVM starts with: used only when it cannot have been planted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


@pytest.fixture
def archives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "jvm"
    folder.mkdir(mode=0o755)
    monkeypatch.setenv("KCURE_CLASS_ARCHIVE_DIR", str(folder))
    return folder


def test_a_session_maps_a_trusted_archive_made_for_this_jvm_and_these_jars(archives: Path) -> None:
    from kcure.core import classdata
    from kcure.core.spark import session_conf

    java = "spark.driver.extraJavaOptions"
    assert classdata.usable() is None and java not in session_conf({"master": "local[2]"})
    path = classdata.archive_path()
    assert path is not None and path.parent == archives and path.name.startswith("spark-")
    path.write_bytes(b"not read here")  # no JVM starts in this test
    path.chmod(0o644)
    assert session_conf({"master": "local[2]"})[java] == f"-XX:SharedArchiveFile={path}"
    assert java not in session_conf({"master": "local[2]", "class_archive": False})
    assert java not in session_conf({"master": "spark://h:7077"})  # a cluster's JVMs are not started here


@pytest.mark.parametrize("plant", ["group_writable_file", "other_writable_folder", "someone_elses", "symlink"])
def test_an_archive_anyone_else_could_have_written_is_never_used(archives: Path, tmp_path: Path, plant: str) -> None:
    from kcure.core import classdata

    path = classdata.archive_path()
    assert path is not None
    if plant == "symlink":
        (tmp_path / "elsewhere.jsa").write_bytes(b"x")
        path.symlink_to(tmp_path / "elsewhere.jsa")
    else:
        path.write_bytes(b"x")
        path.chmod(0o644)
    if plant == "group_writable_file":
        path.chmod(0o664)
    elif plant == "other_writable_folder":
        archives.chmod(0o757)
    elif plant == "someone_elses":
        if os.getuid() != 0:
            pytest.skip("only root can give a file away")
        os.chown(path, 65534, 65534)
    assert classdata.usable() is None
    assert classdata.java_options() == ""


def test_the_archive_is_named_for_the_jars_it_was_made_from(archives: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kcure.core import classdata

    before = classdata.archive_path()
    jars = archives / "jars"
    jars.mkdir()
    (jars / "spark-core.jar").write_bytes(b"x")
    monkeypatch.setattr(classdata, "_jars", lambda: jars)
    first = classdata.archive_path()
    (jars / "spark-core.jar").write_bytes(b"xy")  # an upgrade: another archive
    assert len({before, first, classdata.archive_path()}) == 3
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(archives / "empty"))
    assert classdata.archive_path() is None and classdata.make() is None  # no java: no archive, no error


def test_a_second_maker_leaves_the_archive_to_the_first(archives: Path) -> None:
    import fcntl

    from kcure.core import classdata

    with (archives / ".lock").open("a") as held:  # another process is making it
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(classdata.Busy):
            classdata.make()
    path = classdata.archive_path()
    assert path is not None and not path.exists()

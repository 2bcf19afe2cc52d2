"""Reuse records: an earlier output is found by its key only while its files are the ones it was made as."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kcure.core.reuse import files_identity, read_key, reusable, write_key

pytestmark = pytest.mark.unit


def _output(zone: Path, build: str, data: bytes = b"PAR1 rows PAR1") -> Path:
    folder = zone / build / "T300"
    folder.mkdir(parents=True)
    (folder / "part-00000.parquet").write_bytes(data)
    write_key(folder, "k1")
    return folder


def test_an_output_is_found_by_its_key_and_not_from_its_own_build(tmp_path: Path) -> None:
    made = _output(tmp_path, "b1")
    assert read_key(made)["key"] == "k1"  # type: ignore[index]
    found = reusable(tmp_path / "b2", "T300", "k1")
    assert found is not None and found[0] == made
    assert reusable(tmp_path / "b2", "T300", "k2") is None
    assert reusable(tmp_path / "b1", "T300", "k1") is None  # never its own output


def test_an_output_whose_files_were_replaced_is_never_reused(tmp_path: Path) -> None:
    made = _output(tmp_path, "b1")
    part = made / "part-00000.parquet"
    data = part.read_bytes()
    part.unlink()  # as a test or an operator would plant a fault: the name replaced, the key file kept
    part.write_bytes(data.replace(b"rows", b"ROWS"))
    assert reusable(tmp_path / "b2", "T300", "k1") is None
    (made / "part-00001.parquet").write_bytes(b"more")  # a file added is a different output too
    assert files_identity(made) != read_key(made)["files"]  # type: ignore[index]


def test_a_hard_linked_or_copied_output_keeps_its_identity_and_only_inodes_tell_them_apart(tmp_path: Path) -> None:
    made = _output(tmp_path, "b1")
    linked, copied = tmp_path / "b2" / "T300", tmp_path / "b3" / "T300"
    linked.mkdir(parents=True)
    for f in made.iterdir():
        os.link(f, linked / f.name)
    shutil.copytree(made, copied)  # copy2: the same size and modification time
    assert files_identity(linked) == files_identity(copied) == files_identity(made)
    assert files_identity(linked, inodes=True) == files_identity(made, inodes=True)
    assert files_identity(copied, inodes=True) != files_identity(made, inodes=True)
    assert files_identity(tmp_path / "nothing") == ""

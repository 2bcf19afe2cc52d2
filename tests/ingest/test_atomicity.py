"""A re-delivery switches a staged partition atomically, and a killed ingestion leaves no trace."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kcure.core.staging import Staging

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def test_d002_replaces_d001_atomically(small_landing: Path, cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from kcure.stages.ingest.ingestor import ingest

    landing = tmp_path / "landing"
    shutil.copytree(small_landing / "hira_t200" / "2016" / "d001", landing / "hira_t200" / "2016" / "d001")
    home_cfg = dataclasses.replace(cfg, home=tmp_path / "home")
    first = ingest(home_cfg, str(landing), ["hira_t200"], [2016], data_docs=False)
    assert [(r.delivery, r.status) for r in first] == [(1, "staged")]
    st = Staging(home_cfg.local_path("staging"), home_cfg.local_path("quarantine"))
    rows_d001 = first[0].staged_rows

    # a half-copied d002 (no manifest yet) is waiting, not ingested
    d002 = landing / "hira_t200" / "2016" / "d002"
    d002.mkdir()
    for f in (small_landing / "hira_t200" / "2016" / "d002").glob("part-*"):
        shutil.copy(f, d002 / f.name)
    waiting = ingest(home_cfg, str(landing), ["hira_t200"], [2016], data_docs=False)
    assert [(r.delivery, r.status) for r in waiting] == [(1, "unchanged")]

    seen: list[tuple[frozenset[int], int]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            t = st.read("hira_t200", 2016)
            assert t is not None
            seen.append((frozenset(t.column("_delivery").to_pylist()), t.num_rows))

    th = threading.Thread(target=reader)
    th.start()
    try:
        shutil.copy(small_landing / "hira_t200" / "2016" / "d002" / "_MANIFEST.json", d002 / "_MANIFEST.json")
        second = ingest(home_cfg, str(landing), ["hira_t200"], [2016], data_docs=False)
        time.sleep(0.2)
    finally:
        stop.set()
        th.join()
    assert [(r.delivery, r.status) for r in second] == [(2, "staged")]
    rows_d002 = second[0].staged_rows
    assert len(seen) > 10
    assert set(seen) <= {(frozenset({1}), rows_d001), (frozenset({2}), rows_d002)}
    assert seen[0][0] == {1} and seen[-1][0] == {2}
    versions = sorted(p.name for p in (home_cfg.local_path("staging") / "hira_t200" / "2016").glob("v-*"))
    assert [v[:6] for v in versions] == ["v-d001", "v-d002"]  # the old version stays until purged
    assert len(Staging(home_cfg.local_path("staging"), home_cfg.local_path("quarantine")).purge(0)) == 1


def _staged_tables(home: Path, feed: str) -> dict[int, object]:
    st = Staging(home / "staging", home / "quarantine")
    return {y: st.read(feed, y) for y in range(2012, 2021)}


def test_killing_ingestion_mid_write_then_rerunning_equals_a_clean_run(
    small_landing: Path,
    staged_local,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    local_cfg, _ = staged_local
    home = tmp_path / "home"
    env = {**os.environ, "KCURE_HOME": str(home)}
    cmd = [
        sys.executable,
        "-m",
        "kcure.cli",
        "ingest",
        "--landing",
        str(small_landing),
        "--feeds",
        "hira_t300",
        "--no-data-docs",
    ]
    killed_in = None
    for _attempt in range(5):
        shutil.rmtree(home, ignore_errors=True)
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and killed_in is None:
            for tmp in (home / "staging" / "hira_t300").glob("*/.tmp-*"):
                if any(tmp.glob("*.parquet")):
                    proc.send_signal(signal.SIGKILL)
                    killed_in = tmp.parent.name
                    break
            time.sleep(0.002)
        proc.wait()
        if killed_in:
            break
    assert killed_in is not None, "never caught ingestion mid-write"
    partial = home / "staging" / "hira_t300" / killed_in
    assert not (partial / "CURRENT").exists()  # the killed feed-year never went live
    assert any(partial.glob(".tmp-*"))  # and its half-written version is still lying there

    rerun = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert not list((home / "staging" / "hira_t300").glob("*/.tmp-*"))
    clean = _staged_tables(local_cfg.home, "hira_t300")
    recovered = _staged_tables(home, "hira_t300")
    for year in clean:
        assert recovered[year].equals(clean[year]), year  # type: ignore[union-attr]

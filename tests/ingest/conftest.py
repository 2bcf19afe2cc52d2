from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def staged_local(small_landing: Path, cfg, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The small landing zone ingested from its local folder: (config of that home, results)."""
    from kcure.ingest.run import ingest

    home = tmp_path_factory.mktemp("home-local")
    local_cfg = dataclasses.replace(cfg, home=home)
    results = ingest(local_cfg, str(small_landing), run_id="local")
    return local_cfg, results

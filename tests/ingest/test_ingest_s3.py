"""Ingestion from an S3 prefix (moto's server over HTTP) stages exactly what the local folder stages."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from kcure.core.staging import Staging
from tests import s3server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_s3_landing_stages_the_same_content_as_the_local_folder(
    staged_local,
    small_landing: Path,
    cfg,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from kcure.stages.ingest.ingestor import ingest

    local_cfg, local_results = staged_local
    with s3server.moto_server() as endpoint:
        s3 = s3server.client(endpoint)
        uploaded = s3server.upload_tree(s3, small_landing, "kcure-landing", "deliveries/2024")
        assert uploaded > 100
        # credentials and endpoint come from the environment, as boto3 reads them (no Airflow here)
        for k, v in s3server.env_for(endpoint).items():
            if k.startswith("AWS_"):
                monkeypatch.setenv(k, v)
        s3_cfg = dataclasses.replace(cfg, home=tmp_path / "home-s3")
        s3_results = ingest(s3_cfg, "s3://kcure-landing/deliveries/2024", data_docs=False)

    assert [(r.feed, r.year, r.delivery, r.status) for r in s3_results] == [
        (r.feed, r.year, r.delivery, r.status) for r in local_results
    ]
    local = Staging(local_cfg.local_path("staging"), local_cfg.local_path("quarantine"))
    remote = Staging(s3_cfg.local_path("staging"), s3_cfg.local_path("quarantine"))
    compared = 0
    for r in local_results:
        if not r.ok:
            continue
        a, b = local.read(r.feed, r.year), remote.read(r.feed, r.year)
        assert a is not None and b is not None
        assert a.equals(b), r.label
        assert local.current(r.feed, r.year).version == remote.current(r.feed, r.year).version  # type: ignore[union-attr]
        compared += 1
    assert compared == len(local_results) - 1
    assert "AWS_SECRET_ACCESS_KEY" in os.environ  # the test really used the environment route

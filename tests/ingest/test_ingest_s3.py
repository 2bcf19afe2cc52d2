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


def test_s3_errors_are_reported_as_they_are_not_as_missing_files(
    staged_local,
    small_landing: Path,
    cfg,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """Only NoSuchKey means "not delivered"; an archived (GLACIER) object fails its feed-year with S3's code,
    and an unreadable bucket fails the listing with its code. Feed-years already staged stay live."""
    from kcure.stages.ingest.discover import LandingError
    from kcure.stages.ingest.ingestor import ingest

    with s3server.moto_server() as endpoint:
        s3 = s3server.client(endpoint)
        s3server.upload_tree(s3, small_landing, "kcure-landing", "d")
        for k, v in s3server.env_for(endpoint).items():
            if k.startswith("AWS_"):
                monkeypatch.setenv(k, v)
        s3_cfg = dataclasses.replace(cfg, home=tmp_path / "home")
        url = "s3://kcure-landing/d"
        first = ingest(s3_cfg, url, ["hira_t400", "hira_t530"], [2015], data_docs=False)
        assert [r.status for r in first] == ["staged", "staged"]
        staging = Staging(s3_cfg.local_path("staging"), s3_cfg.local_path("quarantine"))
        before = {f: staging.read(f, 2015) for f in ("hira_t400", "hira_t530")}

        # a new delivery d002 of both feed-years (the same content under a new delivery: it is read again)
        for feed in ("hira_t400", "hira_t530"):
            for obj in s3.list_objects_v2(Bucket="kcure-landing", Prefix=f"d/{feed}/2015/d001/")["Contents"]:
                data = s3.get_object(Bucket="kcure-landing", Key=obj["Key"])["Body"].read()
                if obj["Key"].endswith("_MANIFEST.json"):
                    data = data.replace(b'"delivery": 1', b'"delivery": 2')
                s3.put_object(Bucket="kcure-landing", Key=obj["Key"].replace("/d001/", "/d002/"), Body=data)
        archived = "d/hira_t400/2015/d002/part-00000.csv.gz"
        body = s3.get_object(Bucket="kcure-landing", Key=archived)["Body"].read()
        s3.put_object(Bucket="kcure-landing", Key=archived, Body=body, StorageClass="GLACIER")
        s3.delete_object(Bucket="kcure-landing", Key="d/hira_t530/2015/d002/part-00000.csv.gz")
        again = {r.feed: r for r in ingest(s3_cfg, url, ["hira_t400", "hira_t530"], [2015], data_docs=False)}
        assert again["hira_t400"].status == "failed"
        assert "GetObject failed: InvalidObjectState" in again["hira_t400"].message
        assert "not delivered" not in again["hira_t400"].message
        assert again["hira_t530"].status == "failed"
        assert again["hira_t530"].message.endswith("part-00000.csv.gz: listed in the manifest but not delivered")
        for feed, table in before.items():  # the earlier good data stays live
            assert staging.read(feed, 2015).equals(table)  # type: ignore[union-attr]

        with pytest.raises(LandingError, match="listing failed: NoSuchBucket"):
            ingest(s3_cfg, "s3://no-such-bucket/d", data_docs=False)

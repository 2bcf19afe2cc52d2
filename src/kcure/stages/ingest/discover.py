"""Finding deliveries in the landing zone: a local folder or an S3 prefix read with boto3.

S3 endpoint, region and credentials come from an Airflow connection (``kcure_landing``: login =
access key id, password = secret key, extra ``endpoint_url`` / ``region_name``) or from boto3's own
environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL``), so MinIO, Ceph and AWS all work. Nothing is kept in the repository.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kcure.core.connections import airflow_connection
from kcure.core.deliveries import MANIFEST, Manifest


class NotDelivered(LookupError):
    """A file the manifest lists is not in the landing zone."""


class LandingError(RuntimeError):
    """The landing zone answered with an error other than "not there" (access denied, archived object...)."""


_DELIVERY = re.compile(r"^(?P<feed>[a-z0-9_]+)/(?P<year>\d{4})/d(?P<d>\d{3})/(?P<name>[^/]+)$")


class LandingZone(Protocol):
    @property
    def url(self) -> str: ...

    def list_keys(self) -> Iterable[str]:
        """Every object below the landing root, as ``feed/year/dNNN/name``."""

    def read(self, key: str) -> bytes: ...


@dataclass
class LocalLanding:
    root: Path

    @property
    def url(self) -> str:
        return str(self.root)

    def list_keys(self) -> Iterable[str]:
        for p in self.root.glob("*/*/d*/*"):
            if p.is_file():
                yield p.relative_to(self.root).as_posix()

    def read(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            raise NotDelivered(key) from None


class S3Landing:
    def __init__(self, url: str, client: Any = None) -> None:
        m = re.match(r"^s3://([^/]+)/?(.*)$", url)
        if not m:
            raise ValueError(f"not an s3:// URL: {url}")
        self.url = url
        self.bucket = m.group(1)
        self.prefix = m.group(2).strip("/")
        self.client = client or s3_client()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def list_keys(self) -> Iterable[str]:
        from botocore.exceptions import ClientError

        paginator = self.client.get_paginator("list_objects_v2")
        start = f"{self.prefix}/" if self.prefix else ""
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
                for obj in page.get("Contents", []):
                    yield obj["Key"][len(start) :]
        except ClientError as exc:
            raise LandingError(f"{self.url}: listing failed: {_code(exc)}") from None

    def read(self, key: str) -> bytes:
        """The object's bytes; NotDelivered only for NoSuchKey / 404, LandingError with the code otherwise."""
        from botocore.exceptions import ClientError

        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise NotDelivered(key) from None
            raise LandingError(f"s3://{self.bucket}/{self._key(key)}: GetObject failed: {_code(exc)}") from None
        return body


def _code(exc: Any) -> str:
    """The S3 error code of a botocore ClientError (the HTTP status where there is none)."""
    response = getattr(exc, "response", None) or {}
    code = (response.get("Error") or {}).get("Code")
    return str(code or (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or "unknown")


def s3_client(conn_id: str | None = "kcure_landing") -> Any:
    """A boto3 S3 client from the Airflow connection if there is one, else from the environment."""
    import boto3

    kwargs: dict[str, Any] = {}
    if conn_id:
        conn = airflow_connection(conn_id)
        if conn is not None:
            extra = conn.extra_dejson or {}
            kwargs = {
                "aws_access_key_id": conn.login or None,
                "aws_secret_access_key": conn.password or None,
                "endpoint_url": extra.get("endpoint_url") or None,
                "region_name": extra.get("region_name") or None,
            }
    return boto3.client("s3", **{k: v for k, v in kwargs.items() if v is not None})


def open_landing(url: str) -> LandingZone:
    if url.startswith("s3://"):
        return S3Landing(url)
    return LocalLanding(Path(url))


@dataclass(frozen=True)
class Delivery:
    feed: str
    year: int
    delivery: int
    manifest: Manifest

    @property
    def key(self) -> str:
        return f"{self.feed}/{self.year}/d{self.delivery:03d}"

    @property
    def label(self) -> str:
        return f"{self.feed}/{self.year}/d{self.delivery:03d}"


@dataclass
class Discovery:
    latest: list[Delivery]  # the latest complete delivery of every (feed, year)
    waiting: list[str]  # deliveries without a manifest yet (incomplete: not ingested)
    unknown: list[str]  # top-level folders that are not a configured feed


def discover(
    zone: LandingZone,
    known_feeds: Iterable[str],
    feeds: Iterable[str] | None = None,
    years: Iterable[int] | None = None,
) -> Discovery:
    known = set(known_feeds)
    want_feeds = set(feeds) if feeds else None
    want_years = {int(y) for y in years} if years else None
    complete: dict[tuple[str, int], list[int]] = {}
    seen: set[tuple[str, int, int]] = set()
    unknown: set[str] = set()
    for key in zone.list_keys():
        m = _DELIVERY.match(key)
        if not m:
            continue
        feed, year, d = m.group("feed"), int(m.group("year")), int(m.group("d"))
        if feed not in known:
            unknown.add(feed)
            continue
        if (want_feeds and feed not in want_feeds) or (want_years and year not in want_years):
            continue
        seen.add((feed, year, d))
        if m.group("name") == MANIFEST:
            complete.setdefault((feed, year), []).append(d)
    latest = []
    for (feed, year), ds in sorted(complete.items()):
        d = max(ds)
        manifest = Manifest.from_json(zone.read(f"{feed}/{year}/d{d:03d}/{MANIFEST}").decode("utf-8"))
        latest.append(Delivery(feed, year, d, manifest))
    waiting = sorted(
        f"{f}/{y}/d{d:03d}"
        for f, y, d in seen
        if d not in complete.get((f, y), []) and d > max(complete.get((f, y), [0]))
    )
    return Discovery(latest, waiting, sorted(unknown - {"_truth"}))

"""Ingesting feed-years: verify against the manifest, parse, quarantine, gate, stage atomically.

One feed-year is the unit of work and of failure: a wrong checksum, an unknown format or a failed
critical expectation fails that feed-year only, stages nothing from its delivery, and leaves the
previously staged version live. Every attempt is appended to the ingest log.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from kcure.core.config import Config, Feed
from kcure.core.deliveries import ManifestFile
from kcure.core.staging import StagedVersion, Staging
from kcure.core.zones import private_umask, restricted_dir, write_restricted_parquet
from kcure.stages.ingest.discover import Delivery, LandingError, LandingZone, NotDelivered, discover, open_landing
from kcure.stages.ingest.parse import QUARANTINE_SCHEMA, FormatError, count_rows, parse

log = logging.getLogger("kcure.ingest")
WINDOW_DAYS = 366


class VerificationError(ValueError):
    """A delivered file does not match its manifest."""


@dataclass
class FeedYearResult:
    feed: str
    year: int
    delivery: int
    status: str  # staged | unchanged | failed | gate_failed
    message: str = ""
    delivered_rows: int = 0
    staged_rows: int = 0
    quarantined_rows: int = 0
    version: str | None = None
    seconds: float = 0.0
    gate: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("staged", "unchanged")

    @property
    def label(self) -> str:
        return f"{self.feed}/{self.year}/d{self.delivery:03d}"


def feeds_digest(cfg: Config) -> str:
    """What parsing depends on: the feed contract and the parser version."""
    h = hashlib.sha256(b"parser-v1")
    h.update((cfg.conf_dir / "feeds.yaml").read_bytes())
    return h.hexdigest()[:16]


def _check_manifest(feed: Feed, d: Delivery) -> None:
    m = d.manifest
    promised = (m.format, m.encoding, m.delimiter if m.format == "csv" else "", m.header)
    known = (feed.format, feed.encoding, feed.delimiter if feed.format == "csv" else "", feed.header)
    if (m.feed, m.year) != (d.feed, d.year) or m.delivery != d.delivery:
        raise FormatError(f"{d.label}/_MANIFEST.json names {m.feed}/{m.year}/d{m.delivery:03d}, not its own folder")
    if promised != known:
        raise FormatError(
            f"{d.label}/_MANIFEST.json: format {promised} is not the one conf/feeds.yaml knows for {feed.name} {known}"
        )
    if not m.files:
        raise FormatError(f"{d.label}/_MANIFEST.json lists no files")


def _gate_params(year: int) -> dict[str, Any]:
    return {
        "year": year,
        "year_start": f"{year}-01-01",
        "year_end": f"{year}-12-31",
        "window_start": f"{year - 1}-01-01",
        "window_end": f"{year + 1}-12-31",
    }


def _append_log(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fcntl.flock(fh, fcntl.LOCK_UN)


def read_log(cfg: Config, run_id: str | None = None) -> list[dict[str, Any]]:
    """The ingest log's records (of one run), read under the writers' lock: never a half line."""
    path = cfg.local_path("reports") / "ingest" / "ingest_log.jsonl"
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        try:
            records = [json.loads(line) for line in fh if line.strip()]
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return [r for r in records if run_id is None or r.get("run_id") == run_id]


class Ingestor:
    def __init__(self, cfg: Config, zone: LandingZone, *, run_id: str | None = None, data_docs: bool = True) -> None:
        private_umask()  # staging, quarantine, the ingest log and Data Docs of staged data: owner-only
        self.cfg = cfg
        self.zone = zone
        self.staging = Staging(cfg.local_path("staging"), cfg.local_path("quarantine"))
        self.reports = cfg.local_path("reports") / "ingest"
        self.run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.data_docs = data_docs
        self.digest = feeds_digest(cfg)
        restricted_dir(cfg.local_path("staging"))
        restricted_dir(cfg.local_path("quarantine"))

    def _gate_runner(self, feed: Feed, year: int) -> Any:
        from kcure.core.suites import GateRunner

        docs = self.reports / "data_docs" / feed.name / str(year) if self.data_docs else None
        return GateRunner(docs)

    @staticmethod
    def _gate_part(runner: Any, feed: Feed, year: int, i: int, t: pa.Table) -> Any:
        """Validate one parsed part file right away, so a feed-year never sits in memory whole."""
        df = t.drop_columns(["_delivery", "_file", "_line"]).to_pandas()
        return runner.validate(
            f"raw/{feed.name}", df, batch=f"{feed.name}-{year}-part{i:05d}", params=_gate_params(year)
        )

    @staticmethod
    def _gate_merge(runner: Any, feed: Feed, year: int, results: list[Any]) -> dict[str, Any]:
        from kcure.core.suites import merge

        merged = merge(results, f"raw/{feed.name}", f"{feed.name}/{year}").to_dict()
        index = runner.build_docs()
        if index is not None:
            merged["data_docs"] = str(index)
        return merged

    def _read_verified(self, d: Delivery, f: ManifestFile, feed: Feed) -> tuple[bytes, int]:
        """One delivered file, decompressed, after its sha256 and row count matched the manifest."""
        key = f"{d.key}/{f.name}"
        try:
            data = self.zone.read(key)
        except NotDelivered:
            raise VerificationError(f"{key}: listed in the manifest but not delivered") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != f.sha256:
            raise VerificationError(f"{key}: sha256 mismatch: manifest says {f.sha256}, file has {actual}")
        if f.name.endswith(".gz"):
            data = gzip.decompress(data)
        rows = count_rows(data, feed)
        if rows != f.rows:
            raise VerificationError(f"{key}: row count mismatch: manifest says {f.rows}, file has {rows}")
        return data, rows

    def _stage_files(self, d: Delivery, feed: Feed, tmp: Path, res: FeedYearResult) -> pa.Table:
        """Parse, write and gate every file of the delivery into ``tmp``; the quarantined lines."""
        quarantine: list[pa.Table] = []
        runner = self._gate_runner(feed, d.year)
        gate_results: list[Any] = []
        for i, f in enumerate(d.manifest.files):
            data, rows = self._read_verified(d, f, feed)
            parsed = parse(data, feed, d.delivery, f.name)
            del data
            if parsed.table.num_rows + len({q[0] for q in parsed.quarantine}) != rows:
                raise FormatError(f"{d.key}/{f.name}: {rows} rows delivered but staged + quarantined do not add up")
            write_restricted_parquet(parsed.table, tmp / f"part-{i:05d}.parquet")
            quarantine.append(parsed.quarantine_table(d.feed, d.year, d.delivery, f.name))
            gate_results.append(self._gate_part(runner, feed, d.year, i, parsed.table))
            res.delivered_rows += rows
            res.staged_rows += parsed.table.num_rows
        q = pa.concat_tables(quarantine) if quarantine else QUARANTINE_SCHEMA.empty_table()
        res.quarantined_rows = len(set(zip(q.column("file").to_pylist(), q.column("line").to_pylist(), strict=True)))
        res.gate = self._gate_merge(runner, feed, d.year, gate_results)
        return q

    def _version(self, d: Delivery) -> str:
        """What a staged version is a function of: the delivery, its files and the parser's contract."""
        digest = hashlib.sha256((self.digest + "".join(f.sha256 for f in d.manifest.files)).encode()).hexdigest()
        return f"v-d{d.delivery:03d}-{digest[:12]}"

    def ingest_one(self, d: Delivery) -> FeedYearResult:
        t0 = time.perf_counter()
        feed = self.cfg.feed(d.feed)
        res = FeedYearResult(d.feed, d.year, d.delivery, "failed")
        res.files = [{"name": f.name, "sha256": f.sha256, "rows": f.rows} for f in d.manifest.files]
        tmp: Path | None = None
        try:
            _check_manifest(feed, d)
            version = self._version(d)
            current = self.staging.current(d.feed, d.year)
            if current is not None and current.version == version:
                res.status, res.version, res.message = "unchanged", version, "already staged; nothing parsed"
                res.delivered_rows, res.staged_rows = current.delivered_rows, current.staged_rows
                res.quarantined_rows, res.gate = current.quarantined_rows, current.gate
                return res
            tmp = self.staging.begin(d.feed, d.year)
            q = self._stage_files(d, feed, tmp, res)
            if not res.gate["success"]:
                res.status = "gate_failed"
                res.message = f"critical expectations failed: {', '.join(res.gate['critical_failures'])}"
                return res
            record = StagedVersion(
                feed=d.feed,
                year=d.year,
                delivery=d.delivery,
                version=version,
                files=res.files,
                delivered_rows=res.delivered_rows,
                staged_rows=res.staged_rows,
                quarantined_rows=res.quarantined_rows,
                conf_digest=self.digest,
                staged_at=datetime.now(UTC).isoformat(timespec="seconds"),
                gate=res.gate,
            )
            self.staging.commit(tmp, record, q)
            tmp = None
            res.status, res.version = "staged", version
            if res.gate["warnings"]:
                res.message = f"staged with warnings: {', '.join(res.gate['warnings'])}"
            return res
        except (VerificationError, FormatError, LandingError) as exc:
            res.status, res.message = "failed", str(exc)
            return res
        finally:
            if tmp is not None:
                self.staging.abort(tmp)
            res.seconds = round(time.perf_counter() - t0, 3)
            _append_log(self.reports / "ingest_log.jsonl", {"run_id": self.run_id, **asdict(res)})
            log.info("%s %s %s", res.label, res.status, res.message)


def ingest_delivery(
    cfg: Config, landing: str, feed: str, year: int, delivery: int, *, run_id: str, data_docs: bool = True
) -> FeedYearResult | None:
    """One feed-year's delivery, as the ingest DAG's mapped task ingests it; None when that delivery
    is no longer the feed-year's latest complete one in ``landing``."""
    zone = open_landing(landing)
    found = [d for d in discover(zone, cfg.feeds, [feed], [year]).latest if d.delivery == delivery]
    if not found:
        return None
    return Ingestor(cfg, zone, run_id=run_id, data_docs=data_docs).ingest_one(found[0])


def ingest(
    cfg: Config,
    landing: str | None = None,
    feeds: Iterable[str] | None = None,
    years: Iterable[int] | None = None,
    *,
    run_id: str | None = None,
    data_docs: bool = True,
) -> list[FeedYearResult]:
    for f in feeds or []:
        cfg.feed(f)  # unknown feed names are rejected loudly
    zone = open_landing(landing or cfg.path("landing"))
    found = discover(zone, cfg.feeds, feeds, years)
    for w in found.waiting:
        log.warning("%s has no _MANIFEST.json yet: incomplete, waiting for it", w)
    for u in found.unknown:
        log.warning("landing folder %s is not a feed conf/feeds.yaml knows: ignored", u)
    run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workers = min(int((cfg.pipeline.get("ingest") or {}).get("workers") or os.cpu_count() or 1), len(found.latest))
    if workers <= 1:
        ing = Ingestor(cfg, zone, run_id=run_id, data_docs=data_docs)
        return [ing.ingest_one(d) for d in found.latest]
    # feed-years are independent: one process each, largest first so the workers finish together
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    where = landing or cfg.path("landing")
    order = sorted(found.latest, key=lambda d: -sum(f.rows for f in d.manifest.files))
    done: dict[str, FeedYearResult] = {}
    ctx = get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(_ingest_one, (cfg, where, run_id, data_docs, d)): d for d in order}
        for fut in as_completed(futures):
            d = futures[fut]
            try:
                done[d.key] = fut.result()
            except Exception as exc:  # a crashed or killed worker fails its feed-year, not the others
                res = FeedYearResult(d.feed, d.year, d.delivery, "failed", f"worker failed: {type(exc).__name__}")
                _append_log(
                    cfg.local_path("reports") / "ingest" / "ingest_log.jsonl", {"run_id": run_id, **asdict(res)}
                )
                done[d.key] = res
    return [done[d.key] for d in found.latest]


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive a killed ingestion (it would go on and commit a feed-year)."""
    import ctypes
    import signal
    import sys

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _ingest_one(job: tuple[Config, str, str, bool, Delivery]) -> FeedYearResult:
    cfg, where, run_id, data_docs, d = job
    return Ingestor(cfg, open_landing(where), run_id=run_id, data_docs=data_docs).ingest_one(d)


def describe(results: list[FeedYearResult]) -> str:
    lines = [f"{'feed-year':<28} {'status':<12} {'delivered':>10} {'staged':>10} {'quarantined':>11} {'s':>6}"]
    for r in results:
        lines.append(
            f"{r.label:<28} {r.status:<12} {r.delivered_rows:>10,} {r.staged_rows:>10,} "
            f"{r.quarantined_rows:>11,} {r.seconds:>6.1f}"
        )
    for r in results:
        if r.message and r.status != "unchanged":
            lines.append(f"{r.label}: {r.message}")
    return "\n".join(lines)

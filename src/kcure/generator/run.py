"""``kcure generate``: a synthetic population written as the ten source feeds' deliveries.

People are generated in chunks (``population.chunk_persons``), so memory stays bounded whatever
the population size; every chunk's rows are appended to the open deliveries of their feed-years.
Each random stream is seeded from (seed, chunk, stream), so one seed gives the same bytes.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kcure.core.config import Config, Feed
from kcure.core.deliveries import FEEDS, Manifest
from kcure.core.zones import private_umask
from kcure.generator import faults as flt
from kcure.generator import feeds as fb
from kcure.generator import population as pop
from kcure.generator import text
from kcure.generator.writer import DeliveryWriter

K_CURE_PATIENTS = 2_260_000
FEED_ORDER = FEEDS
PERSON_SCHEMA = pa.schema(
    [
        ("person_id", pa.int64()),
        ("cohort", pa.bool_()),
        ("rrn", pa.string()),
        ("name", pa.string()),
        ("sex", pa.int8()),
        ("birth", pa.date32()),
        ("foreign", pa.bool_()),
        ("sido", pa.string()),
        ("sigungu", pa.string()),
        ("addr", pa.string()),
        ("addr2", pa.string()),
        ("phone", pa.string()),
        ("death", pa.date32()),
        ("death_cause", pa.string()),
        ("sex_fault_feed", pa.string()),
    ]
)
CANCER_SCHEMA = pa.schema(
    [
        ("person_id", pa.int64()),
        ("fdx", pa.date32()),
        ("site", pa.string()),
        ("tcode", pa.string()),
        ("kcd", pa.string()),
        ("mcode", pa.string()),
        ("seer_grp", pa.string()),
        ("method", pa.string()),
        ("hcode", pa.string()),
        ("ptno", pa.string()),
    ]
)


class GenerateError(ValueError):
    pass


@dataclass
class GenerateResult:
    out: Path
    patients: int
    seed: int
    persons: int
    seconds: float
    manifests: list[Manifest] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(m.rows for m in self.manifests)


def patients_for_scale(scale: float) -> int:
    return max(1, round(K_CURE_PATIENTS * scale))


def _rng(seed: int, chunk: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, chunk, stream])


def _parse_corrupt(specs: list[str], cfg: Config) -> dict[tuple[str, int], str]:
    out = {}
    for spec in specs:
        try:
            feed, year, what = spec.split(":")
            key = (cfg.feed(feed).name, int(year))
        except ValueError:
            raise GenerateError(f"--corrupt-manifest {spec!r}: expected FEED:YEAR:rows or FEED:YEAR:sha256") from None
        if what not in ("rows", "sha256"):
            raise GenerateError(f"--corrupt-manifest {spec!r}: the last part must be rows or sha256")
        if key[1] not in cfg.feed(feed).year_range:
            raise GenerateError(f"--corrupt-manifest {spec!r}: {feed} has no year {year}")
        out[key] = what
    return out


class _Deliveries:
    """All open deliveries of a run, with the text pipeline from FeedRows to encoded lines."""

    def __init__(self, cfg: Config, out: Path, truth: Path, seed: int, part_rows: int) -> None:
        gen = cfg.generator
        self.rates = gen["faults"]
        self.seed = seed
        self.redeliveries = {(r["feed"], int(r["year"])): r for r in self.rates.get("redeliveries", [])}
        self.writers: dict[tuple[str, int, int], DeliveryWriter] = {}
        for name in FEED_ORDER:
            feed = cfg.feed(name)
            for year in feed.year_range:
                for d in (1, 2) if (name, year) in self.redeliveries else (1,):
                    when = f"{year + 1}-03-02T09:00:00+09:00" if d == 1 else f"{year + 1}-09-15T09:00:00+09:00"
                    self.writers[(name, year, d)] = DeliveryWriter(out, truth, feed, year, d, part_rows, when)
        self.fault_counts: dict[str, int] = {}

    def _count(self, tags: np.ndarray) -> None:
        for t in tags:
            if t is None:
                continue
            for name in str(t).split(","):
                key = name.split(":")[0]
                self.fault_counts[key] = self.fault_counts.get(key, 0) + 1

    def emit(self, feed: Feed, rows: fb.FeedRows, chunk: int) -> None:
        if len(rows) == 0:
            return
        bad_years = set(np.unique(rows.year).tolist()) - set(feed.year_range)
        if bad_years:
            raise GenerateError(f"{feed.name}: generated rows for years {sorted(bad_years)} outside the feed's years")
        cols_all = {c.name: text.to_text(rows.columns[c.name], c) for c in feed.columns}
        stream = 100 + FEED_ORDER.index(feed.name)
        for year in np.unique(rows.year).tolist():
            sel = np.flatnonzero(rows.year == year)
            take = pa.array(sel)
            cols = {k: v.take(take) for k, v in cols_all.items()}
            pid = rows.pid[sel]
            rng = _rng(self.seed, chunk, stream * 100 + year % 100)
            tags = flt.Tags(len(sel), rows.tag[sel])
            cols = flt.cell_faults(rng, feed, cols, self.rates, tags)
            if feed.rrn_format == "hyphen" and "RRN" in cols:
                cols["RRN"] = text.hyphenate_rrn(cols["RRN"])
            versions = [(1, cols, tags)]
            redo = self.redeliveries.get((feed.name, year))
            if redo:
                old, idx = flt.correct_rows(rng, feed, cols, redo["column"], float(redo["corrected_share"]))
                old_tags, new_tags = tags.copy(), tags.copy()
                old_tags.add(idx, f"superseded_in_d002:{redo['column']}")
                new_tags.add(idx, f"corrected:{redo['column']}")
                versions = [(1, old, old_tags), (2, cols, new_tags)]
            chosen: dict[str, np.ndarray] | None = None
            for delivery, vcols, vtags in versions:
                ordered = [vcols[c.name] for c in feed.columns]
                if feed.format == "fixed":
                    lines = text.fixed_lines(ordered, [int(c.width or 0) for c in feed.columns])
                else:
                    lines = text.csv_lines(ordered, feed.delimiter)
                if chosen is None:
                    chosen = flt.line_faults(rng, feed, lines, self.rates)
                line_rng = _rng(self.seed, chunk, stream * 100 + year % 100 + 50)
                lines, vpid, vt = flt.apply_line_faults(feed, lines, chosen, pid, vtags, line_rng)
                if delivery == 1:
                    self._count(vt)
                self.writers[(feed.name, year, delivery)].append(lines, vpid, vt)

    def close(self, corrupt: dict[tuple[str, int], str]) -> list[Manifest]:
        out = []
        for (name, year, d), w in self.writers.items():
            latest = d == (2 if (name, year) in self.redeliveries else 1)
            out.append(w.close(corrupt.get((name, year)) if latest else None))
        return out


def _first_fdx(n: int, cancers: pop.Cancers) -> np.ndarray:
    first = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    order = np.argsort(cancers.fdx)[::-1]  # earliest written last
    first[cancers.idx[order]] = cancers.fdx[order]
    return first


def _people_batch(p: pop.People) -> pa.RecordBatch:
    return pa.record_batch(
        [
            pa.array(p.pid),
            pa.array(p.cohort),
            pa.array(p.rrn),
            pa.array(p.name),
            pa.array(p.sex.astype(np.int8)),
            pa.array(p.birth),
            pa.array(p.foreign),
            pa.array(p.sido),
            pa.array(p.sigungu),
            pa.array(p.addr),
            pa.array(p.addr2),
            pa.array(p.phone),
            pa.array(p.death),
            pa.array(p.death_cause),
            pa.array(p.sex_fault_feed),
        ],
        schema=PERSON_SCHEMA,
    )


def _cancer_batch(p: pop.People, c: pop.Cancers) -> pa.RecordBatch:
    from kcure.generator.reference import SITES

    return pa.record_batch(
        [
            pa.array(p.pid[c.idx]),
            pa.array(c.fdx),
            pa.array(np.array([s.name for s in SITES])[c.site]),
            pa.array(c.tcode),
            pa.array(c.kcd),
            pa.array(c.mcode),
            pa.array(c.seer),
            pa.array(c.method),
            pa.array(c.hcode),
            pa.array(c.ptno),
        ],
        schema=CANCER_SCHEMA,
    )


def _prepare_out(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not force:
            raise GenerateError(f"{out} is not empty; choose an empty folder or pass --force to replace it")
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)


def generate(
    cfg: Config,
    out: Path,
    patients: int,
    seed: int,
    *,
    part_rows: int | None = None,
    corrupt: list[str] | None = None,
    force: bool = False,
) -> GenerateResult:
    if patients < 1:
        raise GenerateError("--patients must be at least 1")
    private_umask()  # the deliveries carry RRNs and names, the truth maps them to people: owner-only
    t0 = time.perf_counter()
    gen = cfg.generator
    corrupt_map = _parse_corrupt(corrupt or [], cfg)
    _prepare_out(out, force)
    truth = out / "_truth"
    truth.mkdir()
    deliveries = _Deliveries(cfg, out, truth, seed, int(part_rows or gen["files"]["part_rows"]))
    providers = pop.make_providers(_rng(seed, 0, 1))
    cs = int(gen["population"]["chunk_persons"])
    ratio = float(gen["population"]["general_population_ratio"])
    in_claims_share = float(gen["population"]["non_cohort_in_claims"])
    n_general = round(patients * ratio)
    persons = 0
    chunks = math.ceil(patients / cs)
    with (
        pq.ParquetWriter(truth / "persons.parquet", PERSON_SCHEMA, compression="zstd") as pw,
        pq.ParquetWriter(truth / "cancers.parquet", CANCER_SCHEMA, compression="zstd") as cw,
    ):
        for k in range(chunks):
            rng = _rng(seed, k + 1, 0)
            lo, hi = k * cs, min((k + 1) * cs, patients)
            g_lo, g_hi = round(lo * n_general / patients), round(hi * n_general / patients)
            cohort, cancers = pop.make_cohort(rng, np.arange(lo + 1, hi + 1, dtype=np.int64), providers, gen)
            general = pop.make_general(rng, np.arange(patients + g_lo + 1, patients + g_hi + 1, dtype=np.int64), gen)
            in_claims = rng.random(len(general)) < in_claims_share
            claim_people = pop.concat_people([cohort, pop.take_people(general, in_claims)])
            everyone = pop.concat_people([cohort, general])
            pw.write_batch(_people_batch(everyone))
            cw.write_batch(_cancer_batch(cohort, cancers))
            persons += len(everyone)

            def frng(stream: int, k: int = k) -> np.random.Generator:
                return _rng(seed, k + 1, stream)

            emit = deliveries.emit
            emit(cfg.feed("kccr_registry"), fb.registry(frng(1), cohort, cancers), k)
            emit(cfg.feed("nhis_eligibility"), fb.eligibility(frng(2), claim_people), k)
            emit(cfg.feed("nhis_screening"), fb.screening(frng(3), claim_people), k)
            for name, rows in fb.claims(frng(4), claim_people, cancers, providers, gen, k * 10**8).items():
                emit(cfg.feed(name), rows, k)
            covid_rows, covid_death = fb.covid(frng(5), everyone)
            emit(cfg.feed("kdca_covid_case"), covid_rows, k)
            emit(cfg.feed("kdca_vaccination"), fb.vaccination(frng(6), everyone), k)
            first_fdx = _first_fdx(len(everyone), cancers)
            death_rate = float(gen["faults"]["death_before_diagnosis"])
            emit(cfg.feed("kostat_death"), fb.death(frng(7), everyone, covid_death, first_fdx, death_rate), k)
    manifests = deliveries.close(corrupt_map)
    result = GenerateResult(out, patients, seed, persons, time.perf_counter() - t0, manifests)
    summary = {
        "patients": patients,
        "seed": seed,
        "persons": persons,
        "general_population": n_general,
        "config_digest": cfg.digest,
        "generator": gen,
        "corrupt_manifests": {f"{f}:{y}": w for (f, y), w in corrupt_map.items()},
        "injected_faults": dict(sorted(deliveries.fault_counts.items())),
        "deliveries": [
            {"feed": m.feed, "year": m.year, "delivery": m.delivery, "files": len(m.files), "rows": m.rows}
            for m in manifests
        ],
    }
    (truth / "generator.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def describe(result: GenerateResult) -> str:
    """A per-feed listing of what a run wrote, for people."""
    by_feed: dict[str, list[Manifest]] = {}
    for m in result.manifests:
        by_feed.setdefault(m.feed, []).append(m)
    lines = [
        f"wrote {result.out} (patients={result.patients:,}, seed={result.seed}, "
        f"persons incl. general population={result.persons:,}) in {result.seconds:.1f}s",
        f"{'feed':<18} {'years':<10} {'deliveries':>10} {'files':>6} {'rows':>12} {'MiB':>9}",
    ]
    total_rows = total_bytes = 0
    for name in FEED_ORDER:
        ms = by_feed.get(name, [])
        if not ms:
            continue
        size = sum(
            (result.out / m.feed / str(m.year) / f"d{m.delivery:03d}" / f.name).stat().st_size
            for m in ms
            for f in m.files
        )
        latest: dict[int, Manifest] = {}
        for m in ms:
            if m.year not in latest or m.delivery > latest[m.year].delivery:
                latest[m.year] = m
        rows = sum(m.rows for m in latest.values())
        years = f"{min(latest)}-{max(latest)}"
        lines.append(
            f"{name:<18} {years:<10} {len(ms):>10} {sum(len(m.files) for m in ms):>6} {rows:>12,} {size / 2**20:>9.1f}"
        )
        total_rows += rows
        total_bytes += size
    lines.append(f"{'total (latest deliveries)':<40} {total_rows:>19,} {total_bytes / 2**20:>9.1f}")
    lines.append(f"ground truth: {result.out / '_truth'} (persons, cancers, per-row person and faults)")
    return "\n".join(lines)

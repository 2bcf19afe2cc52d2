"""The ingest DAG's task bodies without Airflow: every latest feed-year of a landing zone ingested
one after another in one process, each as `kcure_ingest.ingest_feed_year` does it (its own
configuration load, landing listing and Ingestor). Separates what ingestion costs from what Airflow
adds, and, with --no-data-docs, what rendering Data Docs adds.

    KCURE_HOME=SCRATCH .venv/bin/python bench/ingest_tasks.py LANDING [--no-data-docs] [--profile]

KCURE_HOME must be a scratch folder: the feed-years are staged there.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("landing", help="a local landing folder (kcure generate --out)")
    ap.add_argument("--no-data-docs", action="store_true", help="do not render each feed-year's Data Docs")
    ap.add_argument("--profile", action="store_true", help="print the 30 costliest calls (cProfile)")
    args = ap.parse_args(argv)

    from kcure.core.config import load_config
    from kcure.stages.ingest.discover import discover, open_landing
    from kcure.stages.ingest.ingestor import ingest_delivery

    cfg = load_config()
    latest = discover(open_landing(args.landing), cfg.feeds, None, None).latest
    prof = cProfile.Profile() if args.profile else None
    t0 = time.perf_counter()
    if prof is not None:
        prof.enable()
    with_docs = not args.no_data_docs
    for d in latest:  # as each mapped task does: its own configuration, listing and Ingestor
        result = ingest_delivery(
            load_config(), args.landing, d.feed, d.year, d.delivery, run_id="bench", data_docs=with_docs
        )
        if result is None or not result.ok:
            why = "no longer the latest delivery" if result is None else f"{result.status}: {result.message}"
            print(f"{d.feed}/{d.year}: {why}", file=sys.stderr)
            return 1
    if prof is not None:
        prof.disable()
    docs = "without" if args.no_data_docs else "with"
    print(f"{len(latest)} feed-years, {docs} Data Docs: {time.perf_counter() - t0:.1f} s")
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Spark job: pseudonymized feeds -> cohort-only library tables + linkage report (pseudonymized -> linked).

    spark-submit jobs/link.py --build 2024.1 [--truth DIR]   (or: kcure build --build 2024.1)

Reads only KCURE_LIBRARY_SECRET: this step never sees identifiers or the linkage secret.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kcure import secrets
from kcure.config import load_config
from kcure.jobs import link, quality
from kcure.spark import build_session


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", required=True)
    ap.add_argument("--truth", help="a synthetic population's _truth/ folder: adds precision and recall to the report")
    args = ap.parse_args(argv)
    cfg = load_config()
    key = secrets.load("library")
    spark = build_session(cfg.spark, app_name=f"kcure-link-{args.build}")
    result = link.run(spark, cfg, key, args.build)
    if args.truth:
        q = quality.evaluate(spark, result.out, Path(args.truth))
        (result.out / "_linkage_quality.json").write_text(json.dumps(q, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps(result.tables, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

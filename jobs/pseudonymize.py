"""Spark job: staged feeds -> pseudonymized keys + generalized payload (staging -> pseudonymized).

    spark-submit jobs/pseudonymize.py --build 2024.1        (or: kcure build --build 2024.1)

Reads KCURE_LINKAGE_SECRET and KCURE_LIBRARY_SECRET (see kcure.secrets); refuses to run without them.
"""

from __future__ import annotations

import argparse
import sys

from kcure import secrets
from kcure.config import load_config
from kcure.jobs import pseudonymize
from kcure.spark import build_session


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", required=True, help="build id: output goes to pseudonymized/<build>/")
    args = ap.parse_args(argv)
    cfg = load_config()
    keys = {k: secrets.load(k) for k in ("linkage", "library")}  # before any data is touched
    spark = build_session(cfg.spark, app_name=f"kcure-pseudonymize-{args.build}")
    result = pseudonymize.run(spark, cfg, keys, args.build)
    print(f"pseudonymized {len(result.feeds)} feeds into {result.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

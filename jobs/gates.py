"""Spark job: the release gates over a linked build (k-anonymity by local recoding, the library
Great Expectations suites, referential integrity, accounting).

    spark-submit jobs/gates.py --build 2024.1      (or: kcure build --build 2024.1 --release TAG)

Reads no secret. Writes linked/<build>/_gates.json and the summary the publish step checks; a
failed gate does not fail this job, it makes the publish step refuse.
"""

from __future__ import annotations

import sys

from kcure.pipeline import job_main

if __name__ == "__main__":
    sys.exit(job_main("gates"))

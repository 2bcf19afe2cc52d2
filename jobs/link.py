"""spark-submit entry point of the link stage: pseudonymized/<build>/ -> linked/<build>/ (cohort-only tables).

    spark-submit jobs/link.py --build 2024.1 [--truth DIR]   (or: kcure build --build 2024.1 --from link)

Reads only KCURE_LIBRARY_SECRET: this step never sees identifiers or the linkage secret.
"""

from __future__ import annotations

import sys

from kcure.pipeline import job_main

if __name__ == "__main__":
    sys.exit(job_main("link"))

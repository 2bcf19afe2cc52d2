"""spark-submit entry point of the protect stage: k-anonymity recoding, linked/<build>/ -> protected/<build>/.

    spark-submit jobs/protect.py --build 2024.1    (or: kcure build --build 2024.1 --from protect)

Reads no secret and no identifier.
"""

from __future__ import annotations

import sys

from kcure.pipeline import job_main

if __name__ == "__main__":
    sys.exit(job_main("protect"))

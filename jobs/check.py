"""spark-submit entry point of the check stage: the release gates over protected/<build>/.

    spark-submit jobs/check.py --build 2024.1      (or: kcure build --build 2024.1 --from check)

Reads no secret. A failed gate does not fail this job: it is recorded in the stage's summary,
and the publish stage refuses the build.
"""

from __future__ import annotations

import sys

from kcure.pipeline import job_main

if __name__ == "__main__":
    sys.exit(job_main("check"))

"""spark-submit entry point of the pseudonymize stage: staging/ -> pseudonymized/<build>/.

    spark-submit jobs/pseudonymize.py --build 2024.1        (or: kcure build --build 2024.1)

Reads KCURE_LINKAGE_SECRET and KCURE_LIBRARY_SECRET (kcure.core.secrets); refuses to run without them.
The only stage that sees identifiers.
"""

from __future__ import annotations

import sys

from kcure.pipeline import job_main

if __name__ == "__main__":
    sys.exit(job_main("pseudonymize"))

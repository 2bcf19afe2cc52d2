"""The two secrets of the pipeline, read from outside the repository and never shown.

* ``KCURE_LINKAGE_SECRET`` keys the linkage key: HMAC-SHA256(linkage secret, normalized RRN).
* ``KCURE_LIBRARY_SECRET`` keys the person key of the library, SN_KEY = HMAC(library secret,
  linkage key), and the substitute keys (MID, YID, PRSCP_GRANT_NO).

Each is taken from, in order: the environment variable; the environment variable ``<NAME>_FILE``
naming a file readable by its owner only; the Airflow connection ``kcure_linkage_secret`` /
``kcure_library_secret`` (its password). A missing secret, a secret shorter than 32 bytes, or a
secret file others can read stops the job before it touches any data.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kcure.core.connections import airflow_connection
from kcure.core.keys import Key

MIN_BYTES = 32
NAMES = {"linkage": "KCURE_LINKAGE_SECRET", "library": "KCURE_LIBRARY_SECRET"}


class SecretError(RuntimeError):
    """A secret is missing, too short or badly stored. The message never contains the secret."""


class Secret(Key):
    """One of the pipeline's two secrets (``name``: linkage or library)."""


def _from_file(var: str) -> bytes | None:
    path = os.environ.get(f"{var}_FILE")
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        raise SecretError(f"{var}_FILE names {p}, which is not a file")
    if stat.S_IMODE(p.stat().st_mode) & 0o077:
        raise SecretError(f"{var}_FILE {p} is readable by others: chmod 600 it")
    return p.read_bytes().strip()


def _from_airflow(kind: str) -> bytes | None:
    conn = airflow_connection(f"kcure_{kind}_secret")
    return conn.password.encode() if conn is not None and conn.password else None


def load(kind: str, *, min_bytes: int = MIN_BYTES) -> Secret:
    if kind not in NAMES:
        raise SecretError(f"unknown secret {kind!r}")
    var = NAMES[kind]
    value: bytes | None = None
    env = os.environ.get(var)
    if env:
        value = env.encode()
    if value is None:
        value = _from_file(var)
    if value is None:
        value = _from_airflow(kind)
    if not value:
        raise SecretError(
            f"the {kind} secret is missing: set {var}, or {var}_FILE to an owner-only file, "
            f"or the Airflow connection kcure_{kind}_secret"
        )
    if len(value) < min_bytes:
        raise SecretError(f"the {kind} secret is too short: it must be at least {min_bytes} bytes")
    return Secret(kind, value)

"""Each project's audit trail: an append-only log whose entries are chained and keyed, with its head
kept apart.

Every entry of ``<projects>/<id>/events.jsonl`` carries ``prev`` (the MAC of the entry before it, or
64 zeros) and ``hash``: HMAC-SHA256 under the custodian's audit key of ``prev`` and the entry's
canonical JSON. Someone who can rewrite the log but does not hold the key cannot make an edited entry,
a removed one, or a re-chained suffix verify: the first entry whose MAC is wrong is named. Cutting
off the tail leaves a chain that verifies, so the number of entries and the last MAC are also kept
in the head (``projects.audit_heads``, default ``<KCURE_HOME>/audit/heads/<id>.json``: the
custodian's alone, and a separate volume in a deployment), and a log shorter than its head, or
ending elsewhere, is broken too.

The key: ``KCURE_AUDIT_SECRET`` (from the deployment's secret store; at least 32 characters), else
an owner-only file (``projects.audit_key``, default ``<KCURE_HOME>/keys/audit.key``) made at first
use. Only its fingerprint is ever shown.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.core.keys import Key
from kcure.core.zones import write_json_atomic

if TYPE_CHECKING:
    from kcure.core.config import Config

GENESIS = "0" * 64
KEY_BYTES = 32
ENV = "KCURE_AUDIT_SECRET"


class AuditError(RuntimeError):
    """The audit key or head store is unsafe or unusable (the message never shows the key)."""


class AuditKey(Key):
    """The custodian's key of every project's audit chain."""


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()


def _owner_only(path: Path) -> None:
    st = path.stat()
    if stat.S_IMODE(st.st_mode) & 0o077 or st.st_uid != os.getuid():
        raise AuditError(f"{path} must belong to this account and be owner-only (mode {stat.S_IMODE(st.st_mode):o})")


def load_key(cfg: Config) -> AuditKey:
    """The audit key: from the environment, or the owner-only key file (made now if there is none)."""
    raw = os.environ.get(ENV)
    if raw:
        if len(raw) < KEY_BYTES:
            raise AuditError(f"{ENV} is shorter than {KEY_BYTES} characters")
        return AuditKey("audit", raw.encode())
    path = cfg.project_path("audit_key", "keys/audit.key")
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            fd = -1  # another process made it first: read theirs
        if fd >= 0:
            try:
                os.write(fd, secrets.token_bytes(KEY_BYTES).hex().encode("ascii") + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
    _owner_only(path.parent)
    _owner_only(path)
    value = bytes.fromhex(path.read_text(encoding="ascii").strip())
    if len(value) < KEY_BYTES:
        raise AuditError(f"the audit key in {path.name} is shorter than {KEY_BYTES} bytes")
    return AuditKey("audit", value)


def heads_folder(cfg: Config) -> Path:
    return cfg.project_path("audit_heads", "audit/heads")


@dataclass(frozen=True)
class Head:
    count: int
    last: str


@dataclass(frozen=True)
class Verdict:
    project: str
    entries: int  # entries read from the log
    head: Head | None
    broken_at: int | None = None  # the first broken entry (1-based); None: the chain holds
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None

    def line(self) -> str:
        if self.ok:
            return f"{self.project}: {self.entries} entries, chain and head verified"
        return f"{self.project}: entry {self.broken_at} is broken: {self.problem}"


class Audit:
    """The key and the heads: what makes a project's log verifiable."""

    def __init__(self, key: AuditKey, heads: Path) -> None:
        self.key = key
        self.heads = heads

    @classmethod
    def for_config(cls, cfg: Config) -> Audit:
        return cls(load_key(cfg), heads_folder(cfg))

    def mac(self, prev: str, body: dict[str, Any]) -> str:
        return self.key.hmac_hex(prev.encode() + b"\n" + canonical(body))

    def head(self, project: str) -> Head | None:
        path = self.heads / f"{project}.json"
        if not path.exists():
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Head(int(doc["count"]), str(doc["last"]))

    def set_head(self, project: str, count: int, last: str) -> None:
        self.heads.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.heads, 0o700)
        write_json_atomic(self.heads / f"{project}.json", {"project": project, "count": count, "last": last})

    def seal(self, prev: str, body: dict[str, Any]) -> dict[str, Any]:
        """The entry as written: its body, and its MAC over ``prev`` and the body."""
        return {**body, "hash": self.mac(prev, body)}

    def verify(self, project: str, path: Path) -> tuple[Verdict, list[dict[str, Any]]]:
        """Check every entry's link and MAC, then the head; the verdict and the entries read."""
        head = self.head(project)
        # entries end with "\n" only: splitlines() would also split at U+2028 and the like inside one
        lines = path.read_text(encoding="utf-8").split("\n")[:-1] if path.exists() else []
        out, broken = self._walk(lines)
        if broken is not None:
            return Verdict(project, len(out), head, len(out) + 1, broken), out
        return self._against_head(project, out, head), out

    def _walk(self, lines: list[str]) -> tuple[list[dict[str, Any]], str | None]:
        """The entries that chain and verify, and what is wrong with the next one (None: all do)."""
        out: list[dict[str, Any]] = []
        prev = GENESIS
        for n, line in enumerate(lines, 1):
            try:
                e = json.loads(line)
                body = {k: v for k, v in e.items() if k != "hash"}
            except (json.JSONDecodeError, AttributeError):
                return out, "not a JSON entry"
            if e.get("seq") != n:
                return out, f"its number is {str(e.get('seq'))[:20]}, not {n}"
            if e.get("prev") != prev:
                return out, "it does not link to the entry before it"
            if not secrets.compare_digest(self.mac(prev, body), str(e.get("hash", ""))):
                return out, "its MAC does not match its content (edited, or re-chained)"
            out.append(e)
            prev = e["hash"]
        return out, None

    @staticmethod
    def _against_head(project: str, out: list[dict[str, Any]], head: Head | None) -> Verdict:
        n = len(out)
        if head is None:
            why = "the log has no head: it was not written by this custodian"
            return Verdict(project, n, head, 1, why) if n else Verdict(project, 0, head)
        if n < head.count:
            return Verdict(project, n, head, n + 1, f"the log ends after {n} entries; the head says {head.count}")
        if n > head.count:
            return Verdict(project, n, head, head.count + 1, f"the head ends at entry {head.count}")
        if n and out[-1]["hash"] != head.last:
            return Verdict(project, n, head, n, "the last entry is not the one the head holds")
        return Verdict(project, n, head)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

"""A keyed-hash key that never shows itself: the library's secrets and each research project's key.

:class:`Key` holds the bytes, prints as ``<redacted N bytes>``, and gives Spark only HMAC's padded
keys (:func:`kcure.core.transforms.key_relation`), so the material never appears in a query plan.
Loading the pipeline's own secrets is :mod:`kcure.core.secrets`; a project's key is made and
destroyed by :mod:`kcure.projects.keys`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

BLOCK = 64  # SHA-256 block size in bytes


@dataclass(frozen=True)
class Key:
    name: str
    _value: bytes

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, <redacted {len(self._value)} bytes>)"

    __str__ = __repr__

    def pads(self) -> tuple[bytes, bytes]:
        """HMAC's inner and outer padded keys (RFC 2104), so Spark can compose HMAC from sha2."""
        key = self._value if len(self._value) <= BLOCK else hashlib.sha256(self._value).digest()
        key = key.ljust(BLOCK, b"\0")
        return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)

    def hmac_hex(self, message: bytes) -> str:
        return hmac.new(self._value, message, hashlib.sha256).hexdigest()

    def raw(self) -> bytes:
        """The key bytes, for handing to a child process through an owner-only file only."""
        return self._value

    def derive(self, label: str) -> Key:
        """A sub-key for one purpose (domain separation), as strong as this one."""
        return type(self)(f"{self.name}/{label}", hmac.new(self._value, label.encode(), hashlib.sha256).digest())

    def fingerprint(self) -> str:
        """16 hex characters that identify the key in a manifest without revealing it."""
        return self.hmac_hex(b"kcure key fingerprint")[:16]

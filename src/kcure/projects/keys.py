"""Each research project's own key: made at its first provisioning, destroyed when it closes.

The key re-keys the project's person key and every substitute key that could join two extracts
(MID, YID, PRSCP_GRANT_NO), and draws each person's date shift. It is 32 random bytes in an
owner-only file, ``<keys>/<project>.key``, in an owner-only folder: ``projects.keys`` in
``conf/pipeline.yaml`` (relative to KCURE_HOME; a mounted secret volume in a deployment), or the
``KCURE_PROJECT_KEYS`` environment variable. Nothing but the stage that builds the extract reads it;
manifests carry only its fingerprint. Destroying it overwrites the file before unlinking it, so the
extract's pseudonyms can never be reproduced, nor linked back to the library's.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from kcure.core.keys import Key
from kcure.projects.application import PROJECT_ID

KEY_BYTES = 32


class ProjectKeyError(RuntimeError):
    """The key store is unsafe, or a key is missing where it must exist (never shows a key)."""


class ProjectKey(Key):
    """One project's key (``name``: the project id)."""


class KeyStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, project: str) -> Path:
        if not PROJECT_ID.fullmatch(project):
            raise ProjectKeyError(f"{project[:40]!r} is not a project id")
        return self.folder / f"{project}.key"

    def _check(self, path: Path) -> None:
        for p in (self.folder, path):
            mode = stat.S_IMODE(p.stat().st_mode)
            if mode & 0o077 or p.stat().st_uid != os.getuid():
                raise ProjectKeyError(f"{p} must belong to this account and be owner-only (mode {mode:o})")

    def load(self, project: str) -> ProjectKey | None:
        path = self._path(project)
        if not path.exists():
            return None
        self._check(path)
        value = bytes.fromhex(path.read_text(encoding="ascii").strip())
        if len(value) < KEY_BYTES:
            raise ProjectKeyError(f"the key of {project} is shorter than {KEY_BYTES} bytes")
        return ProjectKey(project, value)

    def load_or_create(self, project: str) -> tuple[ProjectKey, bool]:
        """The project's key, made now if it has none (``True``: it was made)."""
        key = self.load(project)
        if key is not None:
            return key, False
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        path = self._path(project)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES).hex().encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        loaded = self.load(project)
        assert loaded is not None
        return loaded, True

    def destroy(self, project: str) -> bool:
        """Overwrite and remove the key; ``False`` when there was none."""
        path = self._path(project)
        if not path.exists():
            return False
        size = path.stat().st_size
        with path.open("r+b") as f:
            f.write(secrets.token_bytes(size))
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
        return True

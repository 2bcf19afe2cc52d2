from __future__ import annotations

from pathlib import Path

import pytest

from kcure.core import secrets

pytestmark = pytest.mark.unit


def test_missing_secret_refuses_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KCURE_LINKAGE_SECRET", raising=False)
    monkeypatch.delenv("KCURE_LINKAGE_SECRET_FILE", raising=False)
    with pytest.raises(secrets.SecretError, match="linkage secret is missing"):
        secrets.load("linkage")


def test_short_secret_refuses_and_does_not_echo_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KCURE_LIBRARY_SECRET", "short-but-secret-value")
    with pytest.raises(secrets.SecretError) as exc:
        secrets.load("library")
    assert "at least 32 bytes" in str(exc.value)
    assert "short-but-secret-value" not in str(exc.value)


def test_secret_from_owner_only_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "linkage.secret"
    f.write_text("x" * 40 + "\n")
    monkeypatch.delenv("KCURE_LINKAGE_SECRET", raising=False)
    monkeypatch.setenv("KCURE_LINKAGE_SECRET_FILE", str(f))
    f.chmod(0o644)
    with pytest.raises(secrets.SecretError, match="readable by others"):
        secrets.load("linkage")
    f.chmod(0o600)
    s = secrets.load("linkage")
    assert s.hmac_hex(b"m") == secrets.Secret("x", b"x" * 40).hmac_hex(b"m")


def test_repr_never_shows_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    value = "v" * 33 + "UNIQUE-MARKER"
    monkeypatch.setenv("KCURE_LIBRARY_SECRET", value)
    s = secrets.load("library")
    assert "UNIQUE-MARKER" not in repr(s) and "UNIQUE-MARKER" not in str(s) and "UNIQUE-MARKER" not in f"{s}"

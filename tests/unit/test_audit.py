"""The audit chain against someone who can rewrite a project's log but holds neither the audit key nor
the head: every rewrite is found, and the first broken entry is named."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from kcure.projects.audit import GENESIS, Audit, AuditKey, canonical
from kcure.projects.lifecycle import Caller, ProjectRefused, ProjectStore, Rules

PROJECT = "kc20261130009"
ME = Caller("kcure", 1000, frozenset({1000}))


def _logged(tmp_path: Path, n: int = 6) -> tuple[Audit, ProjectStore, Path]:
    audit = Audit(AuditKey("audit", b"a throwaway audit key for tests!"), tmp_path / "heads")
    store = ProjectStore(tmp_path / "projects", Rules(ME.uid, None, "none", 2), audit)
    store.folder(PROJECT).mkdir(parents=True)
    for i in range(n):
        store.note(PROJECT, ME, "query", sql=f"select {i}", rows=i)
    return audit, store, store.folder(PROJECT) / "events.jsonl"


def _entries(log: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in log.read_text().splitlines()]


def _write(log: Path, entries: list[dict]) -> None:  # type: ignore[type-arg]
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))


def _rechain(entries: list[dict], start: int, key: bytes | None) -> list[dict]:  # type: ignore[type-arg]
    """What an attacker without the audit key does: relink every entry from ``start`` (0-based) on,
    with plain SHA-256 or with a key of their own."""
    prev = entries[start - 1]["hash"] if start else GENESIS
    out = entries[:start]
    for e in entries[start:]:
        body = {k: v for k, v in e.items() if k != "hash"} | {"prev": prev}
        msg = prev.encode() + b"\n" + canonical(body)
        digest = hmac.new(key, msg, hashlib.sha256).hexdigest() if key else hashlib.sha256(msg).hexdigest()
        out.append({**body, "hash": digest})
        prev = digest
    return out


def test_an_untouched_log_verifies(tmp_path: Path) -> None:
    audit, _, log = _logged(tmp_path)
    verdict, entries = audit.verify(PROJECT, log)
    assert verdict.ok and verdict.entries == 6 and len(entries) == 6
    assert verdict.head is not None and verdict.head.count == 6 and verdict.head.last == entries[-1]["hash"]
    assert "6 entries, chain and head verified" in verdict.line()


def test_an_edited_entry_is_found_and_named(tmp_path: Path) -> None:
    audit, store, log = _logged(tmp_path)
    entries = _entries(log)
    entries[2]["sql"] = "select 'nothing to see'"  # the MAC is left as it was
    _write(log, entries)
    verdict, _ = audit.verify(PROJECT, log)
    assert verdict.broken_at == 3 and "MAC does not match" in verdict.problem
    with pytest.raises(ProjectRefused, match="entry 3: the audit chain is broken"):
        store.state(PROJECT)


@pytest.mark.parametrize("key", [None, b"the attacker's own key"], ids=["sha256", "own-key"])
def test_a_rechained_suffix_is_found(tmp_path: Path, key: bytes | None) -> None:
    audit, _, log = _logged(tmp_path)
    entries = _entries(log)
    del entries[3]  # remove entry 4, renumber and relink everything after it
    for i, e in enumerate(entries):
        e["seq"] = i + 1
    _write(log, _rechain(entries, 3, key))
    verdict, _ = audit.verify(PROJECT, log)
    assert verdict.broken_at == 4 and "MAC" in verdict.problem


def test_a_cut_off_tail_is_found(tmp_path: Path) -> None:
    audit, _, log = _logged(tmp_path)
    _write(log, _entries(log)[:4])  # what is left still chains perfectly
    verdict, entries = audit.verify(PROJECT, log)
    assert len(entries) == 4 and verdict.broken_at == 5 and "ends after 4 entries; the head says 6" in verdict.problem


def test_a_forged_entry_appended_is_found(tmp_path: Path) -> None:
    audit, _, log = _logged(tmp_path)
    entries = _entries(log)
    forged = {**entries[-1], "seq": 7, "prev": entries[-1]["hash"], "sql": "select 'approved'"}
    _write(log, [*entries, *_rechain([*entries, forged], 6, None)[6:]])
    verdict, _ = audit.verify(PROJECT, log)
    assert verdict.broken_at == 7


def test_a_log_without_its_head_is_not_trusted(tmp_path: Path) -> None:
    audit, _, log = _logged(tmp_path, 2)
    (audit.heads / f"{PROJECT}.json").unlink()
    verdict, _ = audit.verify(PROJECT, log)
    assert verdict.broken_at == 1 and "no head" in verdict.problem


def test_text_with_line_separators_stays_one_entry(tmp_path: Path) -> None:
    """An analyst's SQL is free text: U+2028, U+0085 and a lone surrogate must not split or break the log."""
    audit, store, log = _logged(tmp_path, 1)
    store.note(PROJECT, ME, "query", sql="select 1 -- \u2028 \u0085 \ud800 \r")
    verdict, entries = audit.verify(PROJECT, log)
    assert verdict.ok and len(entries) == 2 and entries[1]["sql"] == "select 1 -- \u2028 \u0085 \ud800 \r"
    assert len(log.read_bytes().split(b"\n")) == 3

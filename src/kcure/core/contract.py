"""The delivered contract (``conf/feeds.yaml``, docs/contract.md §2-3) as typed, validated objects.

Every feed names its institution, years, file format and columns. A column's ``role`` says what it
is: ``id`` a direct identifier (never reaches the library), ``qi`` a quasi-identifier, ``key`` a
source key replaced by a keyed substitute. A feed with an ``rrn`` column names its person; a feed
with ``person_via`` reaches its person only through that column of the person feed that holds it
(T300/T400/T530 through MID of T200).

Also here: :class:`ConfigError` and :class:`Where`, the small reader every configuration file is
loaded with, so an error always names the file and the key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

COLUMN_TYPES = {"string", "int", "float", "date", "code", "rrn"}
ROLES = {None, "id", "qi", "key"}


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file and the setting."""


class Where:
    """One mapping of a configuration file, and where it is (``<file> <dotted.key>``)."""

    def __init__(self, file: str, data: Any, key: str = "") -> None:
        self.file = file
        self.key = key
        self.data = data
        if not isinstance(data, dict):
            self.fail("expected a mapping")

    def at(self, key: str | int) -> str:
        sub = f"{self.key}[{key}]" if isinstance(key, int) else f"{self.key}.{key}" if self.key else str(key)
        return f"{self.file} {sub}"

    def fail(self, problem: str, key: str | int | None = None) -> NoReturn:
        where = self.at(key) if key is not None else f"{self.file} {self.key}".rstrip()
        raise ConfigError(f"{where}: {problem}")

    def sub(self, key: str, *, optional: bool = False) -> Where:
        if key not in self.data:
            if optional:
                return Where(self.file, {}, self._join(key))
            self.fail("missing setting", key)
        return Where(self.file, self.data[key], self._join(key))

    def _join(self, key: str) -> str:
        return f"{self.key}.{key}" if self.key else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., choices: Iterable[Any] = ()) -> Any:
        """``data[key]``, checked to be of ``kind`` (and one of ``choices``); missing: ``default`` or an error."""
        if key not in self.data or self.data[key] is None:
            if default is ...:
                self.fail("missing setting", key)
            return default
        value = self.data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.fail(f"expected {names}, got {type(value).__name__} {value!r}", key)
        allowed = list(choices)
        if allowed and value not in allowed:
            self.fail(f"{value!r} is not one of {', '.join(map(str, allowed))}", key)
        return value

    def positive(self, key: str, default: Any = ...) -> int:
        value = int(self.get(key, int, default))
        if value < 1:
            self.fail(f"must be a positive integer, not {value}", key)
        return value


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    role: str | None = None
    required: bool = False
    values: tuple[str, ...] | None = None
    format: str | None = None
    width: int | None = None


@dataclass(frozen=True)
class Feed:
    name: str
    institution: str
    description: str
    years: tuple[int, int]
    format: str
    encoding: str
    delimiter: str
    header: bool
    compression: str
    extension: str
    columns: tuple[Column, ...]
    rrn_format: str | None = None
    year_column: str | None = None
    person_via: str | None = None

    @property
    def year_range(self) -> range:
        return range(self.years[0], self.years[1] + 1)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"feed {self.name} has no column {name}")

    def has(self, name: str) -> bool:
        return any(c.name == name for c in self.columns)

    @property
    def names_person(self) -> bool:
        """The feed carries its person's RRN: pseudonymize derives linkage keys from it."""
        return any(c.type == "rrn" for c in self.columns)

    @property
    def file_suffix(self) -> str:
        return f".{self.extension}" + (".gz" if self.compression == "gzip" else "")


def _column(w: Where, i: int) -> Column:
    raw = w.data["columns"][i]
    cw = Where(w.file, raw, f"{w.key}.columns[{i}]")
    name = cw.get("name", str)
    kind = cw.get("type", str, choices=sorted(COLUMN_TYPES))
    role = cw.get("role", str, None, choices=sorted(r for r in ROLES if r))
    if kind == "date" and not raw.get("format"):
        cw.fail(f"a date column ({name}) needs a format", "format")
    values = raw.get("values")
    return Column(
        name=name,
        type=kind,
        role=role,
        required=bool(cw.get("required", bool, False)),
        values=tuple(str(v) for v in values) if values is not None else None,
        format=cw.get("format", str, None),
        width=cw.get("width", int, None),
    )


def parse_feed(file: str, name: str, raw: Any) -> Feed:
    w = Where(file, raw, f"feeds.{name}")
    if not isinstance(raw.get("columns"), list) or not raw["columns"]:
        w.fail("needs a list of columns", "columns")
    years = w.get("years", list)
    if len(years) != 2 or not all(isinstance(y, int) for y in years) or years[0] > years[1]:
        w.fail("must be [first, last], two years in order", "years")
    feed = Feed(
        name=name,
        institution=w.get("institution", str),
        description=w.get("description", str, ""),
        years=(years[0], years[1]),
        format=w.get("format", str, choices=("csv", "fixed")),
        encoding=w.get("encoding", str),
        delimiter=w.get("delimiter", str, ""),
        header=w.get("header", bool),
        compression=w.get("compression", str, choices=("none", "gzip")),
        extension=w.get("extension", str),
        columns=tuple(_column(w, i) for i in range(len(raw["columns"]))),
        rrn_format=w.get("rrn_format", str, None, choices=("plain", "hyphen")),
        year_column=w.get("year_column", str, None),
        person_via=w.get("person_via", str, None),
    )
    if feed.format == "fixed" and any(c.width is None for c in feed.columns):
        w.fail("every column of a fixed-width feed needs a width in bytes", "columns")
    for attr in ("year_column", "person_via"):
        col = getattr(feed, attr)
        if col is not None and not feed.has(col):
            w.fail(f"{col!r} is not a column of the feed", attr)
    if feed.names_person == (feed.person_via is not None):
        w.fail("a feed either names its person (an rrn column) or reaches it through person_via, not both")
    return feed


def parse_feeds(file: str, raw: Any) -> dict[str, Feed]:
    top = Where(file, raw)
    feeds = {name: parse_feed(file, name, spec) for name, spec in top.get("feeds", dict).items()}
    for feed in feeds.values():
        if feed.person_via is not None:
            parent_of(feeds, feed)  # exactly one person feed holds the column: checked here, at load
    return feeds


def parent_of(feeds: dict[str, Feed], feed: Feed) -> Feed:
    """The person feed a ``person_via`` feed reaches its person through (the one holding that column)."""
    holders = [f for f in feeds.values() if f.names_person and f.has(str(feed.person_via))]
    if len(holders) != 1:
        raise ConfigError(
            f"feeds.yaml feeds.{feed.name}.person_via: {feed.person_via} must be a column of exactly one "
            f"feed that names its person, found {len(holders)}"
        )
    return holders[0]

"""Configuration: the YAML files in ``conf/`` and the paths derived from ``KCURE_HOME``.

One concern per file (``feeds.yaml``, ``pipeline.yaml``, ``privacy.yaml``, ``generator.yaml``).
``pipeline.yaml`` holds one ``environment`` setting (overridden by ``KCURE_ENV``) that picks the
local or production block. Every path the pipeline writes derives from ``KCURE_HOME`` unless
``conf/`` overrides it with an absolute path or an ``s3://`` URL. Secrets are never read from here.
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

#: the source checkout this package runs from (the image names its folders with KCURE_* instead)
REPO = Path(__file__).resolve().parents[3]
CONF_FILES = ("feeds.yaml", "pipeline.yaml", "privacy.yaml", "generator.yaml", "library.yaml")
PATH_NAMES = (
    "landing",
    "staging",
    "quarantine",
    "pseudonymized",
    "linked",
    "warehouse",
    "catalog",
    "reports",
    "airflow_home",
)
COLUMN_TYPES = {"string", "int", "float", "date", "code", "rrn"}
ROLES = {None, "id", "qi", "key"}


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file and the setting."""


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

    @property
    def file_suffix(self) -> str:
        return f".{self.extension}" + (".gz" if self.compression == "gzip" else "")


def _feed_from_yaml(name: str, raw: dict[str, Any]) -> Feed:
    where = f"conf/feeds.yaml feeds.{name}"
    try:
        cols = []
        for rc in raw["columns"]:
            if rc["type"] not in COLUMN_TYPES:
                raise ConfigError(f"{where}.{rc['name']}: unknown type {rc['type']!r}")
            if rc.get("role") not in ROLES:
                raise ConfigError(f"{where}.{rc['name']}: unknown role {rc.get('role')!r}")
            if rc["type"] == "date" and not rc.get("format"):
                raise ConfigError(f"{where}.{rc['name']}: a date column needs a format")
            values = rc.get("values")
            cols.append(
                Column(
                    name=rc["name"],
                    type=rc["type"],
                    role=rc.get("role"),
                    required=bool(rc.get("required", False)),
                    values=tuple(str(v) for v in values) if values is not None else None,
                    format=rc.get("format"),
                    width=rc.get("width"),
                )
            )
        feed = Feed(
            name=name,
            institution=raw["institution"],
            description=raw.get("description", ""),
            years=(int(raw["years"][0]), int(raw["years"][1])),
            format=raw["format"],
            encoding=raw["encoding"],
            delimiter=raw.get("delimiter", ""),
            header=bool(raw["header"]),
            compression=raw["compression"],
            extension=raw["extension"],
            columns=tuple(cols),
            rrn_format=raw.get("rrn_format"),
            year_column=raw.get("year_column"),
            person_via=raw.get("person_via"),
        )
    except KeyError as exc:
        raise ConfigError(f"{where}: missing setting {exc}") from None
    if feed.format not in {"csv", "fixed"}:
        raise ConfigError(f"{where}.format: must be csv or fixed, not {feed.format!r}")
    if feed.format == "fixed" and any(c.width is None for c in feed.columns):
        raise ConfigError(f"{where}: every column of a fixed-width feed needs a width in bytes")
    if feed.compression not in {"none", "gzip"}:
        raise ConfigError(f"{where}.compression: must be none or gzip")
    return feed


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def default_conf_dir() -> Path:
    """``KCURE_CONF`` if set, else the repository's ``conf/`` next to ``src/``."""
    env = os.environ.get("KCURE_CONF")
    if env:
        return Path(env)
    return REPO / "conf"


@dataclass(frozen=True)
class Config:
    conf_dir: Path
    environment: str
    home: Path
    raw: dict[str, dict[str, Any]] = field(repr=False)

    @cached_property
    def feeds(self) -> dict[str, Feed]:
        return {n: _feed_from_yaml(n, f) for n, f in self.raw["feeds.yaml"]["feeds"].items()}

    def feed(self, name: str) -> Feed:
        try:
            return self.feeds[name]
        except KeyError:
            raise ConfigError(f"unknown feed {name!r}; conf/feeds.yaml knows {', '.join(self.feeds)}") from None

    @cached_property
    def pipeline(self) -> dict[str, Any]:
        p = self.raw["pipeline.yaml"]
        envs = p.get("environments", {})
        if self.environment not in envs:
            raise ConfigError(f"conf/pipeline.yaml: unknown environment {self.environment!r}; known: {', '.join(envs)}")
        return _deep_merge(p.get("defaults", {}), envs[self.environment] or {})

    @property
    def privacy(self) -> dict[str, Any]:
        return self.raw["privacy.yaml"]

    @property
    def library(self) -> dict[str, Any]:
        return self.raw["library.yaml"]

    @property
    def generator(self) -> dict[str, Any]:
        return self.raw["generator.yaml"]

    @property
    def spark(self) -> dict[str, Any]:
        return dict(self.pipeline.get("spark", {}))

    def path(self, name: str) -> str:
        """The resolved location of one pipeline path: a local absolute path or an s3:// URL."""
        if name not in PATH_NAMES:
            raise ConfigError(f"unknown path {name!r}; known: {', '.join(PATH_NAMES)}")
        value = str(self.pipeline["paths"][name])
        if "://" in value:
            return value
        p = Path(value)
        return str(p if p.is_absolute() else self.home / p)

    def local_path(self, name: str) -> Path:
        value = self.path(name)
        if "://" in value:
            raise ConfigError(f"path {name} is {value}, not a local folder")
        return Path(value)

    @property
    def digest(self) -> str:
        """sha256 over the conf files, recorded with every release."""
        h = hashlib.sha256()
        for fname in CONF_FILES:
            h.update(fname.encode())
            h.update((self.conf_dir / fname).read_bytes())
        return h.hexdigest()


def load_config(conf_dir: Path | str | None = None, environment: str | None = None) -> Config:
    conf = Path(conf_dir) if conf_dir else default_conf_dir()
    raw: dict[str, dict[str, Any]] = {}
    for fname in CONF_FILES:
        fpath = conf / fname
        if not fpath.is_file():
            raise ConfigError(f"missing configuration file {fpath}")
        with fpath.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        if not isinstance(data, dict):
            raise ConfigError(f"{fpath}: expected a mapping at the top level")
        raw[fname] = data
    env = environment or os.environ.get("KCURE_ENV") or raw["pipeline.yaml"].get("environment")
    home = Path(os.environ.get("KCURE_HOME", "./var")).expanduser().resolve()
    cfg = Config(conf_dir=conf, environment=str(env), home=home, raw=raw)
    cfg.feeds  # noqa: B018 - validate feeds eagerly so a bad conf fails at load time
    cfg.pipeline  # noqa: B018
    return cfg

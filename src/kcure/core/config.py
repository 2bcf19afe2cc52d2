"""Configuration: the YAML files in ``conf/``, typed and validated at load, and the paths derived
from ``KCURE_HOME``.

One concern per file: ``feeds.yaml`` (the delivered contract, :mod:`kcure.core.contract`),
``library.yaml`` and ``privacy.yaml`` (the released tables and the rules that make them,
:mod:`kcure.core.rules`), ``pipeline.yaml`` (paths, Spark, environment) and ``generator.yaml``
(the synthetic population). A bad file fails :func:`load_config` with the file and the key.
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

from kcure.core.contract import Column, ConfigError, Feed, parse_feeds
from kcure.core.rules import Library, Privacy, parse_library, parse_privacy

__all__ = ["Column", "Config", "ConfigError", "Feed", "Library", "Privacy", "load_config"]

#: the source checkout this package runs from (the image names its folders with KCURE_* instead)
REPO = Path(__file__).resolve().parents[3]
CONF_FILES = ("feeds.yaml", "pipeline.yaml", "privacy.yaml", "generator.yaml", "library.yaml")
PATH_NAMES = (
    "landing",
    "staging",
    "quarantine",
    "pseudonymized",
    "linked",
    "protected",
    "warehouse",
    "catalog",
    "reports",
    "airflow_home",
)


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

    def where(self, fname: str) -> str:
        return str(self.conf_dir / fname)

    @cached_property
    def feeds(self) -> dict[str, Feed]:
        return parse_feeds(self.where("feeds.yaml"), self.raw["feeds.yaml"])

    def feed(self, name: str) -> Feed:
        try:
            return self.feeds[name]
        except KeyError:
            known = ", ".join(self.feeds)
            raise ConfigError(f"unknown feed {name!r}; {self.where('feeds.yaml')} knows {known}") from None

    @cached_property
    def pipeline(self) -> dict[str, Any]:
        p = self.raw["pipeline.yaml"]
        envs = p.get("environments", {})
        if self.environment not in envs:
            raise ConfigError(
                f"{self.where('pipeline.yaml')} environment: unknown environment {self.environment!r}; "
                f"known: {', '.join(envs)}"
            )
        return _deep_merge(p.get("defaults", {}), envs[self.environment] or {})

    @cached_property
    def library(self) -> Library:
        return parse_library(self.where("library.yaml"), self.raw["library.yaml"], self.feeds)

    @cached_property
    def privacy(self) -> Privacy:
        return parse_privacy(self.where("privacy.yaml"), self.raw["privacy.yaml"], self.library)

    @property
    def generator(self) -> dict[str, Any]:
        return self.raw["generator.yaml"]

    @property
    def spark(self) -> dict[str, Any]:
        """Spark's settings; in local mode its shuffle and spill folder is KCURE_HOME's owner-only tmp/."""
        return {"local_dir": str(self.home / "tmp" / "spark"), **dict(self.pipeline.get("spark", {}))}

    def path(self, name: str) -> str:
        """The resolved location of one pipeline path: a local absolute path or an s3:// URL."""
        if name not in PATH_NAMES:
            raise ConfigError(f"unknown path {name!r}; known: {', '.join(PATH_NAMES)}")
        value = str(self.pipeline["paths"][name])
        if "://" in value:
            return value
        p = Path(value)
        return str(p if p.is_absolute() else self.home / p)

    def project_path(self, key: str, default: str, env: str | None = None) -> Path:
        """A research projects' location (``projects.<key>`` in pipeline.yaml, or the ``env`` variable):
        an absolute path, or one relative to KCURE_HOME."""
        raw = (os.environ.get(env) if env else None) or (self.pipeline.get("projects") or {}).get(key) or default
        p = Path(raw)
        return p if p.is_absolute() else self.home / p

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


#: libyaml's parser where PyYAML was built with it (the wheels are): the same documents, 7-15x faster
#: than the pure-Python parser. Every stage, Airflow task and CLI call reads the configuration.
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: Any) -> Any:
    """``yaml.safe_load`` with :data:`SAFE_LOADER`: plain data only (no tags that build objects)."""
    return yaml.load(text, Loader=SAFE_LOADER)


def load_config(conf_dir: Path | str | None = None, environment: str | None = None) -> Config:
    conf = Path(conf_dir) if conf_dir else default_conf_dir()
    raw: dict[str, dict[str, Any]] = {}
    for fname in CONF_FILES:
        fpath = conf / fname
        if not fpath.is_file():
            raise ConfigError(f"missing configuration file {fpath}")
        with fpath.open(encoding="utf-8") as fh:
            data = safe_load(fh)
        if not isinstance(data, dict):
            raise ConfigError(f"{fpath}: expected a mapping at the top level")
        raw[fname] = data
    env = environment or os.environ.get("KCURE_ENV") or raw["pipeline.yaml"].get("environment")
    home = Path(os.environ.get("KCURE_HOME", "./var")).expanduser().resolve()
    cfg = Config(conf_dir=conf, environment=str(env), home=home, raw=raw)
    # validate everything eagerly, so a bad file fails here and not halfway through a build
    cfg.feeds  # noqa: B018
    cfg.pipeline  # noqa: B018
    cfg.library  # noqa: B018
    cfg.privacy  # noqa: B018
    return cfg

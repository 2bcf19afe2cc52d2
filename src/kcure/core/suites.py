"""Great Expectations gates: suites kept as reviewable JSON in ``expectations/``, run on data frames.

Each expectation carries ``severity`` (``critical`` stops the stage; ``warning`` is recorded) and
``meta.why``. Results are kept without any row values (``partial_unexpected_count: 0``), because the
data may hold identifiers; only counts reach result files, logs and Data Docs.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kcure.core.config import REPO

REPO_EXPECTATIONS = REPO / "expectations"
#: BASIC: the counts an outcome needs, and no unexpected-index list or query (SUMMARY computes both, a
#: Spark job per column expectation, and this code never shows them)
NO_VALUES = {"result_format": "BASIC", "partial_unexpected_count": 0, "include_unexpected_rows": False}


def expectations_dir() -> Path:
    return Path(os.environ.get("KCURE_EXPECTATIONS", REPO_EXPECTATIONS))


class SuiteError(ValueError):
    """A suite file is invalid (for example an expectation type GX does not know)."""


@dataclass
class Outcome:
    expectation: str
    column: str | None
    severity: str
    success: bool
    unexpected_count: int | None
    element_count: int | None
    why: str
    error: bool = False

    @property
    def label(self) -> str:
        return f"{self.expectation}({self.column})" if self.column else self.expectation


@dataclass
class GateResult:
    suite: str
    batch: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def critical_failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "critical"]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity != "critical"]

    @property
    def success(self) -> bool:
        return not self.critical_failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "batch": self.batch,
            "success": self.success,
            "critical_failures": [o.label for o in self.critical_failures],
            "warnings": [o.label for o in self.warnings],
            "outcomes": [asdict(o) for o in self.outcomes],
        }


def load_suite_json(name: str, directory: Path | None = None) -> dict[str, Any]:
    path = (directory or expectations_dir()) / f"{name}.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def share_compiled_templates() -> None:
    """Let every Data Docs page of this process reuse the Jinja templates compiled for the first one.

    Great Expectations gives each page renderer a Jinja environment of its own, so every page compiled
    the same templates again: rendering a feed-year's Data Docs took 0.27 s, nearly all of it
    compiling (79 feed-years in one process: 39 s with Data Docs, 18 s without, 22 s with this). One
    in-memory bytecode cache shared by those environments compiles each template once per process.
    Jinja keys its entries by the template's name and a checksum of its source, so an edited
    template is compiled again; nothing goes to disk.
    """
    from great_expectations.render.view.view import DefaultJinjaView
    from jinja2 import BytecodeCache

    if getattr(DefaultJinjaView, "_kcure_templates", None) is not None:
        return

    class CompiledTemplates(BytecodeCache):
        def __init__(self) -> None:
            self.code: dict[str, bytes] = {}

        def load_bytecode(self, bucket: Any) -> None:
            if bucket.key in self.code:
                bucket.bytecode_from_string(self.code[bucket.key])

        def dump_bytecode(self, bucket: Any) -> None:
            self.code[bucket.key] = bucket.bytecode_to_string()

    cache = CompiledTemplates()
    made = DefaultJinjaView.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        self.env.bytecode_cache = cache

    DefaultJinjaView.__init__ = __init__  # type: ignore[method-assign]
    DefaultJinjaView._kcure_templates = cache  # type: ignore[attr-defined]


class GateRunner:
    """One ephemeral GX context whose Data Docs go to ``docs_dir`` (nothing else is written)."""

    def __init__(self, docs_dir: Path | None = None, expectations: Path | None = None) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        for name in ("great_expectations", "great_expectations.data_context.types.base"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.gx = gx
        self.expectations = expectations or expectations_dir()
        self.ctx = gx.get_context(mode="ephemeral")
        self.ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.docs_dir = docs_dir
        if docs_dir is not None:
            share_compiled_templates()
            docs_dir.mkdir(parents=True, exist_ok=True)
            site: Any = {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
            self.ctx.update_data_docs_site("local_site", site)
        self._suites: dict[str, Any] = {}
        self._sources: dict[str, Any] = {}
        self._n = 0
        self._pending_docs = False

    def suite(self, name: str) -> Any:
        if name not in self._suites:
            raw = load_suite_json(name, self.expectations)
            suite = self.ctx.suites.add(self.gx.ExpectationSuite(**raw))
            if len(suite.expectations) != len(raw["expectations"]):
                raise SuiteError(
                    f"expectations/{name}.json: {len(raw['expectations']) - len(suite.expectations)} "
                    "expectation(s) have a type Great Expectations does not know"
                )
            self._suites[name] = suite
        return self._suites[name]

    def _batch_definition(self, kind: str, asset: str) -> Any:
        key = f"{kind}:{asset}"
        if key not in self._sources:
            name = f"{kind}-{asset}".replace("/", ".")
            sources = self.ctx.data_sources
            ds = sources.add_pandas(name) if kind == "pandas" else sources.add_spark(name, persist=False)
            self._sources[key] = ds.add_dataframe_asset(asset.replace("/", ".")).add_batch_definition_whole_dataframe(
                "whole"
            )
        return self._sources[key]

    def validate(
        self, suite_name: str, frame: Any, *, batch: str, params: dict[str, Any] | None = None, kind: str = "pandas"
    ) -> GateResult:
        """Validate a pandas (or Spark) DataFrame; with a docs folder, the result is also rendered."""
        suite = self.suite(suite_name)
        bd = self._batch_definition(kind, suite_name)
        self._n += 1
        if self.docs_dir is None:
            res = bd.get_batch(batch_parameters={"dataframe": frame}).validate(
                suite, expectation_parameters=params or {}, result_format=NO_VALUES
            )
        else:
            gx = self.gx
            vd = self.ctx.validation_definitions.add(
                gx.ValidationDefinition(name=f"{suite_name.replace('/', '.')}-{self._n}", data=bd, suite=suite)
            )
            res = vd.run(
                batch_parameters={"dataframe": frame},
                expectation_parameters=params or {},
                result_format=NO_VALUES,
                # an explicit run_time: without one GX parses run_name as a date ('T400' -> year 400)
                run_id=gx.RunIdentifier(run_name=batch, run_time=datetime.now(UTC)),
            )
            self._pending_docs = True
        return GateResult(suite_name, batch, [self._outcome(r) for r in res.results])

    @staticmethod
    def _outcome(r: Any) -> Outcome:
        c = r.expectation_config
        ei = r.exception_info or {}
        errored = bool(ei.get("raised_exception")) or any(
            isinstance(v, dict) and v.get("raised_exception") for v in ei.values()
        )
        result = r.result or {}
        return Outcome(
            expectation=c.type,
            column=c.kwargs.get("column") or (",".join(c.kwargs["column_list"]) if "column_list" in c.kwargs else None),
            severity=c.severity.value if hasattr(c.severity, "value") else str(c.severity),
            success=bool(r.success) and not errored,
            unexpected_count=result.get("unexpected_count"),
            element_count=result.get("element_count"),
            why=(c.meta or {}).get("why", ""),
            error=errored,
        )

    def build_docs(self) -> Path | None:
        """Render Data Docs for every validation run so far (once, not after each batch)."""
        if self.docs_dir is None:
            return None
        if self._pending_docs:
            self.ctx.build_data_docs()
            self._pending_docs = False
        return self.docs_dir / "index.html"


def merge(results: list[GateResult], suite: str, batch: str) -> GateResult:
    """Several batches of one suite (for example one per part file) as one result."""
    merged: dict[tuple[str, str | None], Outcome] = {}
    for res in results:
        for o in res.outcomes:
            key = (o.expectation, o.column)
            if key not in merged:
                merged[key] = Outcome(**asdict(o))
                continue
            m = merged[key]
            m.success = m.success and o.success
            m.error = m.error or o.error
            if o.unexpected_count is not None:
                m.unexpected_count = (m.unexpected_count or 0) + o.unexpected_count
            if o.element_count is not None:
                m.element_count = (m.element_count or 0) + o.element_count
    return GateResult(suite, batch, list(merged.values()))

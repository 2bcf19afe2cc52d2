"""Stage 4, protect: linked/<build>/ -> protected/<build>/: k-anonymity by local recoding, applied to
every released column that reveals a quasi-identifier.

Person-level quasi-identifiers (``conf/privacy.yaml`` ``k_anonymity.quasi_identifiers``, from the
first registered cancer in RGST and the residence class in BFC in its year) form equivalence
classes. People in classes smaller than k are recoded step by step (``recoding``), only those
people. A recoded value is then written into *every* column that reveals it
(``k_anonymity.reveals``): a widened site becomes its ICD-10 block in RGST and in the C-codes of the
person's claims and death record, site-naming procedures are blanked, and so on. Ages are made
consistent for everyone: every age band in the release is the person's band at diagnosis moved
by the years since, because yearly bands computed from the birth date would pin the birth year.
People still unprotected are dropped from every table when ``drop_last_resort`` is true; otherwise
the stage records the failure and writes no table, so the check stage fails and nothing can be
published. ``protected/<build>/_privacy.json`` records the classes, what each step cost,
l-diversity, and the attacker knowledge the k figure holds against, and which it does not.

The linked tables are never touched: a table the step does not change is linked (hard link) or
copied into protected/ as it is, so running the stage again always starts from link's output.

**Reuse.** A table the step rewrites is a function of its linked rows (the linked feed's own reuse
key), the relation its rows are joined to (every person's decisions, or for claim lines those of
the people the recoding touched, by statement key: :func:`kcure.core.recoding.decisions`, digested
by :func:`kcure.core.reuse.relation_digest`), the people dropped, this stage's code and the
configuration. A table whose key equals an earlier build's is hard-linked from that build, so a
re-delivery of one feed-year rewrites only the tables its change reaches; the recoding itself (who
is recoded how) is always computed library-wide. ``_privacy.json`` says what was reused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.core import kanon as P
from kcure.core.recoding import apply_reveals, claim_parent, decisions, person_qis, persons, threat_model
from kcure.core.reuse import code_digest, conf_digest, enabled, key_of, read_key, relation_digest, reusable, write_key
from kcure.core.spark import local_frame, parquet_rows, read_parquet
from kcure.core.zones import LINEAGE, PRIVACY, link_or_copy_tree, restrict_tree, restricted_dir

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

    from kcure.core.config import Config


def _without(
    spark: SparkSession, cfg: Config, tables: dict[str, DataFrame], dropped: list[Any]
) -> tuple[dict[str, DataFrame], dict[str, DataFrame]]:
    """Every table without the rows of dropped people (claim lines through their statement's key),
    and per claim-line table the statement keys whose lines go."""
    from pyspark.sql import functions as F

    gone = F.broadcast(local_frame(spark, [(d,) for d in dropped], "SN_KEY string"))
    out, lines = {}, {}
    for name, df in tables.items():
        if "SN_KEY" in df.columns:
            out[name] = df.join(gone, "SN_KEY", "left_anti")
            continue
        key, parent = claim_parent(cfg, name)
        lines[name] = tables[parent].join(gone, "SN_KEY", "inner").select(key).distinct()
        out[name] = df.join(F.broadcast(lines[name]), key, "left_anti")
    return out, lines


def _metrics(cfg: Config, people: pd.DataFrame, result: P.KAnonymityResult) -> dict[str, Any]:
    rules = cfg.privacy
    qis = list(rules.quasi_identifiers)
    before = P.class_sizes(people[qis], qis)
    return {
        "k": rules.k,
        "quasi_identifiers": qis,
        "reveals": {q: [r.label for r in rules.revealing(q)] for q in qis},
        "threat_model": threat_model(rules),
        "people": len(people),
        "min_class_before": int(before.min()) if len(before) else 0,
        "min_class_after": result.min_class,
        "class_size_distribution": result.distribution(),
        "costs": [c.__dict__ for c in result.costs],
        "people_dropped": len(result.dropped),
        "rows_dropped": {},
    }


def _l_diversity(cfg: Config, tables: dict[str, DataFrame], result: P.KAnonymityResult) -> dict[str, Any]:
    """The smallest number of distinct sensitive values (as released) in any equivalence class."""
    from pyspark.sql import functions as F

    rules = cfg.privacy
    attr = rules.sensitive_attribute
    pdf: Any = tables[rules.sensitive_table].groupBy("SN_KEY").agg(F.min(attr).alias(attr)).toPandas()
    diverse = result.table.join(pdf.set_index("SN_KEY"), how="left")
    qis = list(rules.quasi_identifiers)
    return {"attribute": attr, "l": P.l_diversity(diverse, qis, attr) if len(diverse) else 0, "required": rules.l}


#: the configuration files a protected table depends on
CONF = ("feeds.yaml", "library.yaml", "privacy.yaml")


@dataclass
class Reuse:
    """What each rewritten table is a function of (see the module's "Reuse"), and what was reused."""

    base: dict[str, Any] | None  # code, configuration and the people dropped (None: reuse is off)
    reused: dict[str, str] = field(default_factory=dict)  # table -> the earlier build whose files it links
    digests: list[tuple[DataFrame, str]] = field(default_factory=list)  # relations digested, held (one job each)

    @classmethod
    def plan(cls, cfg: Config, dropped: list[Any]) -> Reuse:
        if not enabled(cfg):
            return cls(None)
        gone = hashlib.sha256("\n".join(sorted(str(d) for d in dropped)).encode()).hexdigest()
        return cls({"code": code_digest(__name__), "conf": conf_digest(cfg, CONF), "dropped": gone})

    def key(self, cfg: Config, src: Path, name: str, joined: DataFrame | None, gone: DataFrame | None) -> str | None:
        """The key of protected table ``name`` (``joined``: the relation its rows are joined to, None
        when it is only filtered of dropped people; ``gone``: for claim lines, the statement keys of
        the dropped people), or None where it cannot be known."""
        if self.base is None:
            return None
        made = read_key(src / LINEAGE / cfg.library.tables[name].source)  # what link made the table from
        if made is None:
            return None
        doc: dict[str, Any] = {**self.base, "table": name, "input": made["key"]}
        for part, rel in (("decisions", joined), ("dropped_lines", gone)):
            if rel is not None:
                doc[part] = self._digest(rel, f"{name}'s {part}")
        return key_of(doc)

    def _digest(self, rel: DataFrame, what: str) -> str:
        """The relation's digest, computed once per relation object: every person table is joined
        to the same decisions (the relations are held, so an object is never mistaken for another)."""
        for seen, digest in self.digests:
            if seen is rel:
                return digest
        rel.sparkSession.sparkContext.setJobDescription(f"protect: reuse digest of {what}")
        digest = relation_digest(rel)
        self.digests.append((rel, digest))
        return digest


def run(spark: SparkSession, cfg: Config, src: Path, out: Path) -> dict[str, Any]:
    """Protect the linked tables in ``src`` into ``out``; returns what ``_privacy.json`` records, and
    under ``reused`` the tables linked from an earlier build."""
    rules = cfg.privacy
    qis = list(rules.quasi_identifiers)
    tables = {n: read_parquet(spark, src / n) for n in cfg.library.tables if (src / n).is_dir()}
    spark.sparkContext.setJobDescription("protect: quasi-identifiers per person")  # names the jobs in the event log
    pdf: Any = person_qis(tables["RGST"], tables["BFC"], "SIDO" in qis).toPandas()
    people = pdf.set_index("SN_KEY")
    people["_dbyear"] = people["DBYEAR"].astype("object").where(people["DBYEAR"].notna(), None)
    if "DBYEAR" in qis:
        people["DBYEAR"] = people["DBYEAR"].astype("object")
    result = P.enforce_k(people, qis, rules.k, rules.recoding)
    metrics = _metrics(cfg, people, result)
    restricted_dir(out)
    if result.dropped and not rules.drop_last_resort:
        spark.sparkContext.setJobDescription("protect: l-diversity")
        metrics["l_diversity"] = _l_diversity(cfg, tables, result)
        metrics["success"] = False
        metrics["failure"] = (
            f"{len(result.dropped)} people stay in classes smaller than k={rules.k} after recoding, "
            "and drop_last_resort is false"
        )
        _write_privacy(out, metrics)
        return metrics
    spark.sparkContext.setJobDescription("protect: decisions per person")
    kept, lines = _without(spark, cfg, tables, result.dropped) if result.dropped else (tables, {})
    new = dict(kept) if result.dropped else {}  # the tables this run writes; the others are link's, linked
    decided = persons(spark, people, result, rules).cache()
    new.update(apply_reveals(cfg, kept, decided))
    spark.sparkContext.setJobDescription("protect: l-diversity")
    metrics["l_diversity"] = _l_diversity(cfg, {**kept, **new}, result)
    plan = Reuse.plan(cfg, result.dropped)
    for name, df in tables.items():
        if name not in new:
            link_or_copy_tree(src / name, out / name)
            continue
        joined = decisions(cfg, kept, decided, name) if any(r.table == name for r in rules.reveals) else None
        key = plan.key(cfg, src, name, joined, lines.get(name))
        earlier = reusable(out, name, key) if key is not None else None
        if earlier is not None:
            link_or_copy_tree(earlier[0], out / name)
            plan.reused[name] = earlier[0].parent.name
            metrics["rows_dropped"][name] = int(earlier[1]["rows_dropped"])
            continue
        spark.sparkContext.setJobDescription(f"protect: {name}")
        new[name].select(*df.columns).write.mode("overwrite").parquet(str(out / name))
        metrics["rows_dropped"][name] = parquet_rows(src / name) - parquet_rows(out / name)
        if key is not None:
            write_key(out / name, key, rows_dropped=metrics["rows_dropped"][name])
    decided.unpersist()
    metrics["success"] = True
    _write_privacy(out, metrics)  # the release's privacy result: the same whatever was reused
    return {**metrics, "reused": plan.reused}


def _write_privacy(out: Path, metrics: dict[str, Any]) -> None:
    (out / PRIVACY).write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")
    restrict_tree(out)

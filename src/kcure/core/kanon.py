"""Re-identification risk: k-anonymity with local recoding, and l-diversity (docs/contract.md §5).

The person-level quasi-identifiers (sex, age band, residence class, diagnosis year, 3-character
cancer site) form equivalence classes. Classes smaller than k are repaired in the order
``conf/privacy.yaml`` gives, touching only the people in small classes (local recoding):
widen a value first (site to its ICD-10 block, age to a wider band), suppress a
value only where widening is not enough, and drop a person only as the last resort, because rare
cancers are exactly what researchers need. Every step's cost is counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from kcure.core.rules import RecodingStep

SUPPRESSED = "*"

# ICD-10 blocks of malignant neoplasms (C00-C97), for widening a 3-character site
ICD10_BLOCKS = (
    ("C00", "C14", "C00-C14"),
    ("C15", "C26", "C15-C26"),
    ("C30", "C39", "C30-C39"),
    ("C40", "C41", "C40-C41"),
    ("C43", "C44", "C43-C44"),
    ("C45", "C49", "C45-C49"),
    ("C50", "C50", "C50"),
    ("C51", "C58", "C51-C58"),
    ("C60", "C63", "C60-C63"),
    ("C64", "C68", "C64-C68"),
    ("C69", "C72", "C69-C72"),
    ("C73", "C75", "C73-C75"),
    ("C76", "C80", "C76-C80"),
    ("C81", "C96", "C81-C96"),
    ("C97", "C97", "C97"),
)


def icd10_block(site: str) -> str:
    if not isinstance(site, str) or len(site) < 3:
        return SUPPRESSED
    s = site[:3].upper()
    for lo, hi, label in ICD10_BLOCKS:
        if lo <= s <= hi:
            return label
    return SUPPRESSED


def widen_age(band: str, width: int) -> str:
    """'62-64'-style or '60-64' bands to a wider band ('60-69' for width 10); '85+' stays."""
    if not isinstance(band, str) or band.endswith("+") or band == SUPPRESSED:
        return band
    lo, hi = (int(x) for x in band.split("-"))
    if hi - lo + 1 >= width:  # already as wide: never narrowed
        return band
    start = lo // width * width
    return f"{start:02d}-{start + width - 1:02d}"


RECODERS: dict[str, Callable[[pd.Series, RecodingStep], pd.Series]] = {
    "site_to_block": lambda s, step: s.map(icd10_block),
    "age_to_band": lambda s, step: s.map(lambda v: widen_age(v, int(step.width or 10))),
    "suppress": lambda s, step: pd.Series(SUPPRESSED, index=s.index),
}


@dataclass
class StepCost:
    step: str
    column: str
    action: str
    people: int


@dataclass
class KAnonymityResult:
    k: int
    table: pd.DataFrame  # the quasi-identifiers after repair, one row per person (index kept)
    dropped: list[Any] = field(default_factory=list)
    costs: list[StepCost] = field(default_factory=list)

    @property
    def min_class(self) -> int:
        sizes = class_sizes(self.table, list(self.table.columns))
        return int(sizes.min()) if len(sizes) else 0

    def distribution(self) -> dict[str, int]:
        """How many equivalence classes have each size (sizes above 20 pooled)."""
        sizes = class_sizes(self.table, list(self.table.columns))
        out: dict[str, int] = {}
        for s in sizes:
            key = str(int(s)) if s <= 20 else "21+"
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: (len(kv[0]), kv[0])))


def class_sizes(df: pd.DataFrame, qis: list[str]) -> pd.Series:
    if df.empty:
        return pd.Series(dtype="int64")
    return df.groupby(qis, dropna=False, observed=True).size()


def _small(df: pd.DataFrame, qis: list[str], k: int) -> pd.Series:
    sizes = df.groupby(qis, dropna=False, observed=True)[qis[0]].transform("size")
    return sizes < k


def enforce_k(df: pd.DataFrame, qis: list[str], k: int, steps: Sequence[RecodingStep]) -> KAnonymityResult:
    """Repair classes smaller than k step by step; people still in small classes at the end are dropped."""
    work = df[qis].astype("object").copy()
    costs: list[StepCost] = []
    for step in steps:
        small = _small(work, qis, k)
        if not small.any():
            break
        before = work.loc[small, step.column]
        after = RECODERS[step.action](before, step)
        changed = before.astype(str) != after.astype(str)
        work.loc[small, step.column] = after
        action = "suppressed" if step.action == "suppress" else "recoded"
        costs.append(StepCost(step.label, step.column, action, int(changed.sum())))
    small = _small(work, qis, k)
    dropped = list(work.index[small])
    if dropped:
        costs.append(StepCost("drop", "*", "dropped", len(dropped)))
    return KAnonymityResult(k, work.loc[~small], dropped, costs)


def l_diversity(df: pd.DataFrame, qis: list[str], sensitive: str) -> int:
    """The smallest number of distinct sensitive values in any equivalence class (nulls are a value)."""
    if df.empty:
        return 0
    return int(
        df.assign(_s=df[sensitive].fillna("<none>")).groupby(qis, dropna=False, observed=True)["_s"].nunique().min()
    )

"""A research project's application: what it asks for, read from YAML and checked against the library.

An application is the document the committee reviews and the provision stage obeys: the project's id,
its people (OS accounts), its approvals (IRB, security pledges), the release it targets, the cohort it
may see, and the tables, columns and years it receives. Everything it names is checked against
``conf/library.yaml`` and ``conf/privacy.yaml`` at once, and every problem is reported, each naming the
file, the key and the rule, so an applicant fixes them in one round.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from kcure.core.rules import Library

#: K-CURE style: kc, the date of application (YYYYMMDD), a three-digit serial
PROJECT_ID = re.compile(r"kc(\d{4})(\d{2})(\d{2})(\d{3})")
RELEASE_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
OS_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
#: an ICD-10 three-character code (C16) or a block of them (C18-C20)
SITE = re.compile(r"([CD])(\d\d)(?:-([CD])(\d\d))?")
AGE_BAND = re.compile(r"(\d{1,3})-(\d{1,3})")
#: an ICD-O-3 morphology code (8140) or a range of them (8140-8389)
HISTOLOGY = re.compile(r"(\d{4})(?:-(\d{4}))?")
STAGES = ("1", "2", "3", "4", "9")  # RGST.SEER_GRP
DATE_PRECISIONS = ("day", "month")
SEXES = ("1", "2")
STRATA = ("SEX", "AGE", "SIDO", "DBYEAR", "TCODE3")
TOP_KEYS = {
    "project", "title", "principal_investigator", "analysts", "purpose", "irb", "pledges", "release",
    "cohort", "tables", "date_precision", "date_shift", "plans", "expires",
}  # fmt: skip
COHORT_KEYS = {"sites", "years", "sex", "age_bands", "histology", "stage", "sample"}


class ApplicationError(ValueError):
    """An application breaks rules; ``problems`` holds one line per problem (file, key, rule)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        n = len(problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the application:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Sample:
    fraction: float
    strata: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class Cohort:
    sites: tuple[str, ...]  # codes and blocks as written: C16, C18-C20
    years: tuple[int, int]  # diagnosis years, both included
    sex: tuple[str, ...] = SEXES
    age_bands: tuple[tuple[int, int], ...] = ()  # age at diagnosis, both ends included; () = every age
    sample: Sample | None = None
    histology: tuple[tuple[str, str], ...] = ()  # ICD-O-3 morphology ranges (RGST.MCODE); () = every one
    stage: tuple[str, ...] = ()  # SEER summary stages (RGST.SEER_GRP); () = every stage

    def site_ranges(self) -> list[tuple[str, str]]:
        """Each site as its first and last three-character code: C16 -> (C16, C16)."""
        return [_site_range(s) for s in self.sites]

    def site_matches(self, code: str) -> bool:
        """Whether a diagnosis code (C16, C169, C16.9) falls inside one of the cohort's sites."""
        head = code.replace(".", "")[:3].upper()
        return any(_site_range(s)[0] <= head <= _site_range(s)[1] for s in self.sites)


@dataclass(frozen=True)
class TableRequest:
    name: str
    columns: tuple[str, ...]
    years: tuple[int, int]


@dataclass(frozen=True)
class Application:
    project: str
    title: str
    principal_investigator: str
    analysts: tuple[str, ...]
    purpose: str
    irb_number: str
    irb_approved: date
    pledges: dict[str, date]
    release: str  # a tag, or "latest": the newest release when the project is provisioned
    cohort: Cohort
    tables: dict[str, TableRequest]
    date_precision: str
    expires: date
    date_shift: bool = True  # shift each person's dates by a keyed whole number of weeks
    plans: dict[str, str] = field(default_factory=dict)
    sha256: str = ""  # of the file's bytes: the version the committee reviewed

    @property
    def people(self) -> tuple[str, ...]:
        """Everyone on the project: its principal investigator and its analysts."""
        return tuple(dict.fromkeys((self.principal_investigator, *self.analysts)))


def _site_range(site: str) -> tuple[str, str]:
    m = SITE.fullmatch(site)
    if m is None:
        raise ValueError(site)
    lo = f"{m[1]}{m[2]}"
    return lo, (f"{m[3]}{m[4]}" if m[3] else lo)


class _Reader:
    """Reads one application and collects every problem instead of stopping at the first."""

    def __init__(self, file: str, today: date, check_dates: bool = True) -> None:
        self.file = file
        self.today = today
        self.check_dates = check_dates
        self.problems: list[str] = []

    def fail(self, key: str, rule: str) -> None:
        self.problems.append(f"{self.file} {key}: {rule}")

    def mapping(self, raw: Any, key: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self.fail(key, f"expected a mapping, got {type(raw).__name__}")
            return {}
        for k in sorted(set(raw) - (allowed or set(raw)), key=str):
            self.fail(f"{key}.{k}" if key else str(k), f"unknown setting (allowed: {', '.join(sorted(allowed or []))})")
        return raw

    def text(self, raw: dict[str, Any], key: str, where: str = "", pattern: re.Pattern[str] | None = None) -> str:
        name = f"{where}.{key}" if where else key
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(name, "missing: a non-empty text is required")
            return ""
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(name, f"{_shown(value)} does not match {pattern.pattern}")
        return value.strip()

    def day(self, raw: Any, name: str, *, past: bool | None = None) -> date:
        value = raw if isinstance(raw, date) else _iso(raw)
        if value is None:
            self.fail(name, f"{_shown(raw)} is not a date (YYYY-MM-DD)")
            return self.today
        if not self.check_dates:
            return value
        if past is True and value > self.today:
            self.fail(name, f"{value} is in the future")
        if past is False and value <= self.today:
            self.fail(name, f"{value} is not in the future (today is {self.today})")
        return value

    def years(self, raw: Any, name: str, window: tuple[int, int]) -> tuple[int, int]:
        if not (isinstance(raw, list) and len(raw) == 2 and all(_is_int(y) for y in raw)):
            self.fail(name, "expected [first, last], two years")
            return window
        first, last = raw
        if first > last:
            self.fail(name, f"{first} is after {last}")
        if first < window[0] or last > window[1]:
            self.fail(name, f"[{first}, {last}] is outside the library's years {window[0]}-{window[1]}")
        return int(first), int(last)

    def strings(self, raw: Any, name: str, check: Callable[[str], str | None]) -> tuple[str, ...]:
        if not isinstance(raw, list) or not raw:
            self.fail(name, "expected a non-empty list")
            return ()
        out = []
        for i, v in enumerate(raw):
            problem = check(v) if isinstance(v, str) else f"expected text, got {type(v).__name__}"
            if problem:
                self.fail(f"{name}[{i}]", problem)
            else:
                out.append(v)
        if len(set(out)) != len(out):
            self.fail(name, "a value appears twice")
        return tuple(out)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _member(allowed: tuple[str, ...] | list[str], what: str) -> Callable[[str], str | None]:
    """A check that a value is one of ``allowed``, naming ``what`` it should have been."""
    return lambda v: None if v in allowed else f"{_shown(v)} is not {what}"


def _iso(raw: Any) -> date | None:
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


def _histology_problem(v: str) -> str | None:
    m = HISTOLOGY.fullmatch(v)
    if m is None:
        return f"{_shown(v)} is not an ICD-O-3 morphology code (8140) or range (8140-8389)"
    return f"range {v} ends before it starts" if m[2] and m[2] < m[1] else None


def _site_problem(v: str) -> str | None:
    m = SITE.fullmatch(v)
    if m is None:
        return f"{_shown(v)} is not an ICD-10 code (C16) or block (C18-C20)"
    if m[3] and (m[1], m[2]) > (m[3], m[4]):
        return f"block {v} ends before it starts"
    return None


def _os_user_problem(v: str) -> str | None:
    return None if OS_USER.fullmatch(v) else f"{_shown(v)} is not an OS user name"


def _age_band_problem(v: str) -> str | None:
    m = AGE_BAND.fullmatch(v)
    return None if m and int(m[1]) <= int(m[2]) else f"{_shown(v)} is not an age band such as 40-59"


def _cohort(r: _Reader, raw: Any, window: tuple[int, int]) -> Cohort:
    c = r.mapping(raw, "cohort", COHORT_KEYS)
    sites = r.strings(c.get("sites"), "cohort.sites", _site_problem)
    years = r.years(c.get("years"), "cohort.years", window)
    sex: tuple[str, ...] = SEXES
    if "sex" in c:
        raw_sex = [str(s) for s in c["sex"]] if isinstance(c["sex"], list) else c["sex"]
        sex = r.strings(raw_sex, "cohort.sex", _member(SEXES, "a sex code (1, 2)"))
    bands: tuple[tuple[int, int], ...] = ()
    if "age_bands" in c:
        bands = tuple(
            (int(lo), int(hi))
            for lo, hi in (b.split("-") for b in r.strings(c["age_bands"], "cohort.age_bands", _age_band_problem))
        )
    histology: tuple[tuple[str, str], ...] = ()
    if "histology" in c:
        codes = r.strings([str(h) for h in c["histology"]] if isinstance(c["histology"], list) else None,
                          "cohort.histology", _histology_problem)  # fmt: skip
        histology = tuple((h[:4], h[-4:]) for h in codes)
    stage: tuple[str, ...] = ()
    if "stage" in c:
        raw_stage = [str(s) for s in c["stage"]] if isinstance(c["stage"], list) else c["stage"]
        stage = r.strings(raw_stage, "cohort.stage", _member(STAGES, f"a SEER stage ({', '.join(STAGES)})"))
    return Cohort(tuple(sites), years, tuple(sex), bands, _sample(r, c.get("sample")), histology, stage)


def _sample(r: _Reader, raw: Any) -> Sample | None:
    if raw is None:
        return None
    s = r.mapping(raw, "cohort.sample", {"fraction", "strata", "seed"})
    fraction = s.get("fraction")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction <= 1:
        r.fail("cohort.sample.fraction", "expected a fraction in (0, 1]")
        fraction = 1.0
    strata = r.strings(s.get("strata"), "cohort.sample.strata", _member(STRATA, f"one of {', '.join(STRATA)}"))
    raw_seed: Any = s.get("seed")
    seed = int(raw_seed) if _is_int(raw_seed) else 0
    if not _is_int(raw_seed):
        r.fail("cohort.sample.seed", "expected an integer: the same seed draws the same sample")
    return Sample(float(fraction), strata, seed)


def _tables(r: _Reader, raw: Any, library: Library, window: tuple[int, int]) -> dict[str, TableRequest]:
    t = r.mapping(raw, "tables")
    if not t:
        r.fail("tables", "name at least one table")
    out = {}
    for name, spec in t.items():
        key = f"tables.{name}"
        if name not in library.tables:
            r.fail(key, f"unknown table (the library has {', '.join(library.tables)})")
            continue
        known = library.table(name).column_names
        s = r.mapping(spec, key, {"columns", "years"})
        columns: tuple[str, ...] = tuple(known)
        if s.get("columns") != "all":
            columns = r.strings(s.get("columns"), f"{key}.columns", _member(known, f"a column of {name}"))
        years = r.years(s.get("years", list(window)), f"{key}.years", window)
        out[name] = TableRequest(name, columns, years)
    return out


def _restricted(r: _Reader, library: Library, tables: dict[str, TableRequest], plans: dict[str, Any]) -> None:
    """A column the catalog restricts is received only with the plan it names declared."""
    for name, req in tables.items():
        for col in library.table(name).columns:
            if col.name in req.columns and col.restricted and not str(plans.get(col.restricted, "")).strip():
                r.fail(f"tables.{name}.columns", f"{col.name} needs plans.{col.restricted} (restricted by the catalog)")


def _people(r: _Reader, a: dict[str, Any], user_exists: Callable[[str], bool]) -> tuple[str, tuple[str, ...]]:
    pi = r.text(a, "principal_investigator", pattern=OS_USER)
    analysts = r.strings(a.get("analysts"), "analysts", _os_user_problem)
    for i, user in enumerate((pi, *analysts)):
        if user and OS_USER.fullmatch(user) and not user_exists(user):
            r.fail("principal_investigator" if i == 0 else f"analysts[{i - 1}]", f"no OS account {user!r} here")
    return pi, analysts


def _approvals(r: _Reader, a: dict[str, Any], people: tuple[str, ...]) -> tuple[str, date, dict[str, date]]:
    irb = r.mapping(a.get("irb"), "irb", {"number", "approved"})
    number = r.text(irb, "number", "irb")
    approved = r.day(irb.get("approved"), "irb.approved", past=True)
    raw = r.mapping(a.get("pledges", {}), "pledges")
    pledges = {str(u): r.day(d, f"pledges.{u}", past=True) for u, d in raw.items()}
    for user in people:
        if user and user not in pledges:
            r.fail("pledges", f"{user} has no signed security pledge")
    return number, approved, pledges


def read_application(path: Path, library: Library, window: tuple[int, int], **kw: Any) -> Application:
    """Read and check one application file; ApplicationError lists every problem found."""
    return parse_application(path.read_bytes(), path.name, library, window, **kw)


def parse_application(
    data: bytes,
    name: str,
    library: Library,
    window: tuple[int, int],
    *,
    today: date | None = None,
    user_exists: Callable[[str], bool] | None = None,
    check_dates: bool = True,
) -> Application:
    """Check one application (``data``, the bytes of the file called ``name``) against the library."""
    import yaml

    from kcure.core.config import safe_load

    r = _Reader(name, today or date.today(), check_dates)
    try:
        raw = safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}" if mark is not None else "the file"
        raise ApplicationError([f"{name} {at}: not valid UTF-8 YAML"]) from None
    a = r.mapping(raw, "", TOP_KEYS)
    project = r.text(a, "project", pattern=PROJECT_ID)
    m = PROJECT_ID.fullmatch(project)
    if m and _iso(f"{m[1]}-{m[2]}-{m[3]}") is None:
        r.fail("project", f"{project} does not start with a date (kcYYYYMMDDNNN)")
    pi, analysts = _people(r, a, user_exists or _os_user_exists)
    irb_number, irb_approved, pledges = _approvals(r, a, (pi, *analysts))
    release = a.get("release", "latest")
    if not isinstance(release, str) or not RELEASE_TAG.fullmatch(release):
        r.fail("release", f"{_shown(release)} is not a release tag (or latest)")
    tables = _tables(r, a.get("tables"), library, window)
    plans = r.mapping(a.get("plans", {}), "plans")
    _restricted(r, library, tables, plans)
    precision = a.get("date_precision", "month")
    if precision not in DATE_PRECISIONS:
        r.fail("date_precision", f"{_shown(precision)} is not one of {', '.join(DATE_PRECISIONS)}")
    shift = a.get("date_shift", True)
    if not isinstance(shift, bool):
        r.fail("date_shift", f"{_shown(shift)} is not true or false")
    app = Application(
        project=project,
        title=r.text(a, "title"),
        principal_investigator=pi,
        analysts=analysts,
        purpose=r.text(a, "purpose"),
        irb_number=irb_number,
        irb_approved=irb_approved,
        pledges=pledges,
        release=str(release),
        cohort=_cohort(r, a.get("cohort"), window),
        tables=tables,
        date_precision=str(precision),
        date_shift=bool(shift),
        expires=r.day(a.get("expires"), "expires", past=False),
        plans={str(k): str(v) for k, v in plans.items()},
        sha256=hashlib.sha256(data).hexdigest(),
    )
    if r.problems:
        raise ApplicationError(r.problems)
    return app


def _os_user_exists(user: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True

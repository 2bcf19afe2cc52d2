"""The library's rules as typed, validated objects: ``conf/library.yaml`` and ``conf/privacy.yaml``.

``library.yaml`` says what each released column is made of (``from``: a column of the table's
source feed) and how (``rule``); ``privacy.yaml`` gives the rules' parameters (band widths, code
lengths, residence classes), the cohort window, k, l, the recoding ladder and the export threshold.
The stages read these objects only, so what the files say is what is enforced. Everything is
checked at load, against the feed contract too, and an error names the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kcure.core.contract import ConfigError, Feed, Where

LIBRARY_TYPES = ("string", "int", "long", "double", "date")

#: column rules: the parameters each takes, and the feed column types it reads
RULES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "copy": (frozenset(), frozenset()),
    "year": (frozenset(), frozenset({"date"})),
    "age_band": (frozenset({"at", "at_mid_year"}), frozenset({"date"})),
    "diagnosis_date": (frozenset(), frozenset({"date"})),
    "date_text": (frozenset({"format"}), frozenset({"date"})),
    "kcd": (frozenset(), frozenset({"code"})),
    "residence_class": (frozenset(), frozenset()),
    "substitute": (frozenset({"label"}), frozenset()),
    "treatment_code": (frozenset({"type_column", "default_type"}), frozenset()),
    "ingredient_code": (frozenset(), frozenset()),
    "person_key": (frozenset(), frozenset()),
}
DATE_TEXT_FORMATS = ("yyyyMMdd", "yyyyMM", "yyyy")
#: person-level quasi-identifiers the protect stage knows how to derive from RGST and BFC
KNOWN_QIS = ("SEX", "AGE", "SIDO", "DBYEAR", "TCODE3")
#: recoding actions, and the quasi-identifiers the protect stage can apply each one to. The diagnosis
#: year is not among them: claims keep day-level dates, so it is treated as known, never hidden.
RECODING = {
    "site_to_block": ("TCODE3",),
    "age_to_band": ("AGE",),
    "suppress": ("AGE", "SIDO", "TCODE3"),
}
#: how a released column reveals a quasi-identifier, so that recoding the one recodes the other
REVEALS = {
    "AGE": ("age_band",),  # an age band in the row's year: the person's band moved by the years since diagnosis
    "SIDO": ("value",),  # the person's value, in every row
    "SEX": ("value",),
    "DBYEAR": ("value",),
    "TCODE3": ("site_code", "diagnosis_code", "morphology", "site_procedure"),
}


@dataclass(frozen=True)
class LibraryColumn:
    name: str
    type: str
    rule: str
    source: str | None  # the feed column it is made of (None for person_key)
    params: dict[str, str] = field(default_factory=dict)
    meaning: str = ""
    generalization: str = ""
    restricted: str = ""  # the plan a research project must declare to receive this column (plans.<name>)


@dataclass(frozen=True)
class LibraryTable:
    name: str
    grain: str
    source: str  # the feed
    columns: tuple[LibraryColumn, ...]
    year: str | None = None  # SQL over the table's columns giving its year (kcure diff)
    year_via: str | None = None  # or: the year of the row of this table it joins through MID
    if_no_input: str = "empty"  # empty: published empty with its schema; omit: left out of the release
    death_date: str | None = None  # rows dated before the person's first diagnosis are conflicts

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def person_key(self) -> str | None:
        return next((c.name for c in self.columns if c.rule == "person_key"), None)


@dataclass(frozen=True)
class Cohort:
    table: str  # the registry: its people diagnosed inside privacy.window are the cohort
    diagnosis_year: str
    diagnosis_date: str


@dataclass(frozen=True)
class Conflicts:
    duplicates: str  # drop | keep
    sex: str  # registry | keep
    death_before_diagnosis: str  # drop_death | keep
    several_deaths: str  # keep_rrn | keep


@dataclass(frozen=True)
class Library:
    tables: dict[str, LibraryTable]
    cohort: Cohort
    conflicts: Conflicts

    def table(self, name: str) -> LibraryTable:
        return self.tables[name]

    @property
    def by_feed(self) -> dict[str, str]:
        """feed -> the table made from it."""
        return {t.source: name for name, t in self.tables.items()}


@dataclass(frozen=True)
class Generalization:
    diagnosis_date: str  # yyyymm | yyyymmdd
    age_band_years: int
    age_top_band: int
    residence_classes: dict[str, tuple[str, ...] | None]  # None: every other code
    kcd_chars: int
    kcd_chars_mental: int
    drug_price_code: str
    device_code_chars: int
    ingredient_code_chars: int


@dataclass(frozen=True)
class RecodingStep:
    column: str
    action: str
    width: int | None = None

    @property
    def label(self) -> str:
        return f"{self.action}:{self.column}"


@dataclass(frozen=True)
class Reveal:
    """A released column that reveals a quasi-identifier, and how it is recoded with it."""

    qi: str
    table: str
    column: str
    kind: str  # age_band | value | site_code | diagnosis_code | morphology | site_procedure
    year: str | None = None  # age_band: the column giving the row's year

    @property
    def label(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class Privacy:
    min_secret_bytes: int
    window: tuple[int, int]
    generalization: Generalization
    k: int
    quasi_identifiers: tuple[str, ...]
    l: int  # noqa: E741 - the l of l-diversity
    sensitive_table: str
    sensitive_attribute: str
    min_cell_count: int
    recoding: tuple[RecodingStep, ...]
    drop_last_resort: bool
    reveals: tuple[Reveal, ...] = ()
    site_procedures: tuple[str, ...] = ()  # procedure codes that name a cancer's site
    rounding: int = 5  # counts shown outside the custodian's zone are rounded to this
    dominance_top: int = 2  # an amount's n largest contributors (people) ...
    dominance_share: float = 0.9  # ... must hold less than this share of it (export review)
    extracts: ExtractRules | None = None  # what a research project's extract must satisfy

    def revealing(self, qi: str) -> tuple[Reveal, ...]:
        return tuple(r for r in self.reveals if r.qi == qi)


# --- library.yaml ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventModel:
    """An attacker who knows the true date of one event of the target: its first one, or any one."""

    name: str
    table: str
    columns: tuple[str, ...]  # the released columns that show the event's date (the first released one is used)
    which: str  # first | any
    where: str | None = None  # SQL over the release's columns choosing the rows that are such events


@dataclass(frozen=True)
class ExtractRules:
    shift_weeks: int  # W: a person's dates move by a keyed whole number of weeks in [-W, W], never 0
    max_average_risk: float  # per one-event model
    max_unique_share: float  # per one-event model
    events: tuple[EventModel, ...]

    @property
    def shift_days(self) -> int:
        return 7 * self.shift_weeks


def _share(w: Where, key: str, default: float) -> float:
    value = float(w.get(key, (int, float), default))
    if not 0 < value <= 1:
        w.fail(f"must be a share in (0, 1], not {value}", key)
    return value


def _check_source(cw: Where, rule: str, source: str, feed: Feed) -> None:
    """The source column exists, is no identifier, and is of a type the rule reads."""
    if not feed.has(source):
        cw.fail(f"{source!r} is not a column of feed {feed.name}", "from")
    col = feed.column(source)
    if col.role == "id":
        cw.fail(f"{source} is a direct identifier of {feed.name}: no rule may release it", "from")
    if col.role == "key" and rule != "substitute":
        cw.fail(f"{source} is a source key of {feed.name}: only rule substitute may release it", "rule")
    reads = RULES[rule][1]
    if reads and col.type not in reads:
        cw.fail(f"rule {rule} reads a {'/'.join(sorted(reads))} column; {source} is {col.type}", "from")


def _library_column(file: str, key: str, raw: Any, feed: Feed) -> LibraryColumn:
    cw = Where(file, raw, key)
    name = cw.get("name", str)
    rule = cw.get("rule", str, "copy", choices=RULES)
    allowed = RULES[rule][0]
    fixed = {"name", "type", "rule", "from", "meaning", "generalization", "restricted"}
    unknown = set(cw.data) - fixed - allowed
    if unknown:
        cw.fail(f"rule {rule} takes no setting {', '.join(sorted(unknown))}")
    params = {k: str(cw.data[k]) for k in sorted(allowed & set(cw.data))}
    source = None if rule == "person_key" else cw.get("from", str, name)
    if source is not None:
        _check_source(cw, rule, source, feed)
    for setting in ("at", "at_mid_year", "type_column"):
        if setting in params and not feed.has(params[setting]):
            cw.fail(f"{params[setting]!r} is not a column of feed {feed.name}", setting)
    if rule == "age_band" and len(params) != 1:
        cw.fail("age_band needs exactly one of at (a date column) or at_mid_year (a year column)")
    if rule == "date_text" and params.get("format") not in DATE_TEXT_FORMATS:
        cw.fail(f"format must be one of {', '.join(DATE_TEXT_FORMATS)}", "format")
    if rule == "treatment_code" and "type_column" not in params:
        cw.fail("treatment_code needs type_column", "type_column")
    return LibraryColumn(
        name=name,
        type=cw.get("type", str, choices=LIBRARY_TYPES),
        rule=rule,
        source=source,
        params=params,
        meaning=cw.get("meaning", str, ""),
        generalization=cw.get("generalization", str, ""),
        restricted=cw.get("restricted", str, ""),
    )


def _library_table(w: Where, name: str, feeds: dict[str, Feed]) -> LibraryTable:
    tw = w.sub(name)
    source = tw.get("source", str)
    if source not in feeds:
        tw.fail(f"unknown feed {source!r}; conf/feeds.yaml knows {', '.join(feeds)}", "source")
    feed = feeds[source]
    raw_columns = tw.get("columns", list)
    columns = tuple(_library_column(tw.file, f"{tw.key}.columns[{i}]", c, feed) for i, c in enumerate(raw_columns))
    year = tw.data.get("year")
    table = LibraryTable(
        name=name,
        grain=tw.get("grain", str, ""),
        source=source,
        columns=columns,
        year=year if isinstance(year, str) else None,
        year_via=str(year["via"]) if isinstance(year, dict) and "via" in year else None,
        if_no_input=tw.get("if_no_input", str, "empty", choices=("empty", "omit")),
        death_date=tw.get("death_date", str, None),
    )
    names = table.column_names
    if len(set(names)) != len(names):
        tw.fail("a column name appears twice", "columns")
    keys = [c.name for c in columns if c.rule == "person_key"]
    if feed.names_person and len(keys) != 1:
        tw.fail(f"{source} names its person: the table needs exactly one person_key column", "columns")
    if not feed.names_person and (keys or feed.person_via not in names):
        tw.fail(f"{source} reaches its person through {feed.person_via}: keep that column, no person_key", "columns")
    if table.death_date is not None and table.death_date not in names:
        tw.fail(f"{table.death_date!r} is not a column of the table", "death_date")
    return table


def _substitutes_agree(file: str, tables: dict[str, LibraryTable]) -> None:
    """A source key gets the same substitute everywhere, or joins between tables break."""
    labels: dict[str, tuple[str, str]] = {}
    for t in tables.values():
        for c in t.columns:
            if c.rule != "substitute" or c.source is None:
                continue
            label = c.params.get("label", c.source)
            seen = labels.setdefault(c.source, (label, t.name))
            if seen[0] != label:
                raise ConfigError(
                    f"{file} tables.{t.name}.columns.{c.name}: substitute of {c.source} labelled {label!r}, "
                    f"but {seen[1]} labels it {seen[0]!r}: the same key must get the same substitute"
                )


def parse_library(file: str, raw: Any, feeds: dict[str, Feed]) -> Library:
    top = Where(file, raw)
    tw = top.sub("tables")
    tables = {name: _library_table(tw, name, feeds) for name in tw.data}
    sources = [t.source for t in tables.values()]
    dup = {s for s in sources if sources.count(s) > 1}
    if dup:
        tw.fail(f"feed {sorted(dup)[0]} is the source of two tables")
    _substitutes_agree(file, tables)
    cw = top.sub("cohort")
    cohort = Cohort(cw.get("table", str, choices=tables), cw.get("diagnosis_year", str), cw.get("diagnosis_date", str))
    for key in ("diagnosis_year", "diagnosis_date"):
        if getattr(cohort, key) not in tables[cohort.table].column_names:
            cw.fail(f"{getattr(cohort, key)!r} is not a column of {cohort.table}", key)
    fw = top.sub("conflicts")
    conflicts = Conflicts(
        duplicates=fw.get("duplicates", str, choices=("drop", "keep")),
        sex=fw.get("sex", str, choices=("registry", "keep")),
        death_before_diagnosis=fw.get("death_before_diagnosis", str, choices=("drop_death", "keep")),
        several_deaths=fw.get("several_deaths", str, choices=("keep_rrn", "keep")),
    )
    return Library(tables, cohort, conflicts)


# --- privacy.yaml ------------------------------------------------------------------------------------


def _generalization(w: Where) -> Generalization:
    rc = w.sub("residence_classes")
    classes: dict[str, tuple[str, ...] | None] = {}
    for label, codes in rc.data.items():
        if codes == "*":
            classes[str(label)] = None
        elif isinstance(codes, list) and all(isinstance(c, str) for c in codes):
            classes[str(label)] = tuple(codes)
        else:
            rc.fail("a list of 2-digit SIDO codes (quoted), or '*' for every other code", str(label))
    if list(classes.values()).count(None) > 1:
        rc.fail("only one class can take the rest ('*')")
    return Generalization(
        diagnosis_date=w.get("diagnosis_date", str, choices=("yyyymm", "yyyymmdd")),
        age_band_years=w.positive("age_band_years"),
        age_top_band=w.positive("age_top_band"),
        residence_classes=classes,
        kcd_chars=w.positive("kcd_chars"),
        kcd_chars_mental=w.positive("kcd_chars_mental"),
        drug_price_code=w.get("drug_price_code", str, choices=("null",)),
        device_code_chars=w.positive("device_code_chars"),
        ingredient_code_chars=w.positive("ingredient_code_chars"),
    )


def _recoding(top: Where, qis: tuple[str, ...], band: int) -> tuple[RecodingStep, ...]:
    steps = top.get("recoding", list, [])
    out = []
    for i, raw in enumerate(steps):
        sw = Where(top.file, raw, f"recoding[{i}]")
        action = sw.get("action", str, choices=RECODING)
        if sw.data.get("column") == "DBYEAR":
            sw.fail("the diagnosis year cannot be hidden while claims keep day-level dates: it is treated as known")
        column = sw.get("column", str, choices=RECODING[action])
        if column not in qis:
            sw.fail(f"{column} is not one of k_anonymity.quasi_identifiers ({', '.join(qis)})", "column")
        width = sw.positive("width") if action == "age_to_band" else None
        if width is not None and width % band:
            sw.fail(f"an age band of {width} years does not contain whole {band}-year bands", "width")
        out.append(RecodingStep(column, action, width))
    return tuple(out)


#: the column each recodable quasi-identifier is measured from: its reveals must include it
SOURCE_OF = {"AGE": "RGST.AGE", "SIDO": "BFC.SIDO", "TCODE3": "RGST.TCODE", "SEX": "RGST.SEX", "DBYEAR": "RGST.DBYEAR"}


def _reveals(kw: Where, qis: tuple[str, ...], library: Library) -> tuple[Reveal, ...]:
    rw = kw.sub("reveals")
    out = []
    for qi, entries in rw.data.items():
        if qi not in qis:
            rw.fail(f"{qi} is not one of quasi_identifiers ({', '.join(qis)})", str(qi))
        for i, raw in enumerate(entries if isinstance(entries, list) else []):
            ew = Where(kw.file, raw, f"{rw.key}.{qi}[{i}]")
            table, _, column = ew.get("column", str).partition(".")
            if table not in library.tables or column not in library.tables[table].column_names:
                ew.fail(f"{table}.{column} is not a column of the library (conf/library.yaml)", "column")
            kind = ew.get("as", str, choices=REVEALS[qi])
            year = ew.get("year", str, None)
            if (kind == "age_band") != (year is not None) or (year and year not in library.tables[table].column_names):
                ew.fail("an age_band needs year: a column of its table giving the row's year", "year")
            out.append(Reveal(qi, table, column, kind, year))
    return tuple(out)


def _extracts(w: Where, library: Library) -> ExtractRules:
    def share(key: str) -> float:
        value = float(w.get(key, (int, float)))
        if not 0 <= value <= 1:
            w.fail(f"a share between 0 and 1, not {value}", key)
        return value

    ew = w.sub("one_event_models")
    events = []
    for name in ew.data:
        mw = ew.sub(str(name))
        table = mw.get("table", str, choices=library.tables)
        columns = mw.get("dates", list)
        for column in columns:
            spec = next((c for c in library.tables[table].columns if c.name == column), None)
            if spec is None or (spec.type != "date" and spec.rule not in ("date_text", "diagnosis_date")):
                mw.fail(f"{column!r} is not a date column of {table}", "dates")
        if not columns:
            mw.fail("name at least one date column", "dates")
        which = mw.get("which", str, choices=("first", "any"))
        events.append(EventModel(str(name), table, tuple(columns), which, mw.get("where", str, None)))
    return ExtractRules(
        shift_weeks=w.positive("date_shift_weeks"),
        max_average_risk=share("max_average_risk"),
        max_unique_share=share("max_unique_share"),
        events=tuple(events),
    )


def parse_privacy(file: str, raw: Any, library: Library) -> Privacy:
    top = Where(file, raw)
    years = top.sub("window").get("diagnosis_years", list)
    if len(years) != 2 or not all(isinstance(y, int) for y in years) or years[0] > years[1]:
        top.sub("window").fail("must be [first, last], two years in order", "diagnosis_years")
    kw = top.sub("k_anonymity")
    qis = kw.get("quasi_identifiers", list)
    for i, q in enumerate(qis):
        if q not in KNOWN_QIS:
            Where(file, {}, "k_anonymity.quasi_identifiers").fail(
                f"unknown quasi-identifier {q!r}; the protect stage derives {', '.join(KNOWN_QIS)}", i
            )
    if not qis or len(set(qis)) != len(qis):
        kw.fail("a non-empty list without repeats", "quasi_identifiers")
    lw = top.sub("l_diversity")
    table = lw.get("table", str, "DEATH", choices=library.tables)
    attribute = lw.get("sensitive_attribute", str)
    if attribute not in library.tables[table].column_names:
        lw.fail(f"{attribute!r} is not a column of {table}", "sensitive_attribute")
    general = _generalization(top.sub("generalization"))
    recoding = _recoding(top, tuple(qis), general.age_band_years)
    reveals = _reveals(kw, tuple(qis), library)
    for step in recoding:  # a recoded quasi-identifier is recoded where it is measured, at least
        if SOURCE_OF[step.column] not in {r.label for r in reveals if r.qi == step.column}:
            kw.fail(
                f"{step.column} is recoded ({step.label}) but {SOURCE_OF[step.column]} is not among its reveals",
                "reveals",
            )
    return Privacy(
        min_secret_bytes=top.sub("secrets").positive("min_bytes"),
        window=(years[0], years[1]),
        generalization=general,
        k=kw.positive("k"),
        quasi_identifiers=tuple(qis),
        l=lw.positive("l"),
        sensitive_table=table,
        sensitive_attribute=attribute,
        min_cell_count=top.sub("export").positive("min_cell_count"),
        rounding=top.sub("export").positive("rounding", 5),
        dominance_top=top.sub("export").positive("dominance_top", 2),
        dominance_share=_share(top.sub("export"), "dominance_share", 0.9),
        recoding=recoding,
        drop_last_resort=top.get("drop_last_resort", bool),
        reveals=reveals,
        site_procedures=tuple(str(c) for c in kw.get("site_procedures", list, [])),
        extracts=_extracts(top.sub("extracts"), library) if "extracts" in top.data else None,
    )

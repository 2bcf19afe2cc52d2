"""``kcure``: the command line of the K-CURE library pipeline."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from kcure.core.config import ConfigError, load_config

#: the build's stages, for --from/--to (kcure.pipeline.NAMES; kept here so the CLI starts without Spark)
STAGE_NAMES = ("pseudonymize", "link", "protect", "check", "publish", "report")


def _cmd_generate(args: argparse.Namespace) -> int:
    from kcure.generator.run import GenerateError, describe, generate, patients_for_scale

    cfg = load_config(args.conf)
    patients = args.patients if args.patients is not None else patients_for_scale(args.scale)
    out = Path(args.out) if args.out else cfg.local_path("landing")
    try:
        result = generate(
            cfg, out, patients, args.seed, part_rows=args.part_rows, corrupt=args.corrupt_manifest, force=args.force
        )
    except GenerateError as exc:
        print(f"kcure generate: {exc}", file=sys.stderr)
        return 2
    print(describe(result))
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    import logging

    from kcure.stages.ingest.ingestor import describe, ingest

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.conf)
    years = [int(y) for y in args.years] if args.years else None
    results = ingest(cfg, args.landing, args.feeds, years, data_docs=not args.no_data_docs)
    print(describe(results))
    if not results:
        print("nothing to ingest: no complete delivery matched", file=sys.stderr)
    print(f"ingest log: {cfg.local_path('reports') / 'ingest' / 'ingest_log.jsonl'}")
    return 0 if all(r.ok for r in results) else 1


def _cmd_ingest_log(args: argparse.Namespace) -> int:
    from kcure.stages.ingest.ingestor import FeedYearResult, describe, read_log

    cfg = load_config(args.conf)
    log = cfg.local_path("reports") / "ingest" / "ingest_log.jsonl"
    entries = read_log(cfg)
    if not entries:
        print(f"no ingest run recorded in {log}")
        return 0
    run = args.run or entries[-1]["run_id"]
    mine = [e for e in entries if e["run_id"] == run]
    if not mine:
        print(f"kcure ingest-log: no run {run!r} in {log}", file=sys.stderr)
        return 1
    fields = set(FeedYearResult.__dataclass_fields__)
    results = [FeedYearResult(**{k: v for k, v in e.items() if k in fields}) for e in mine]
    print(f"ingest run {run}: {len(results)} feed-year(s)")
    if args.by_feed:
        print(f"{'feed':<20} {'years':>5} {'statuses':<22} {'delivered':>11} {'staged':>11} {'quarantined':>11}")
        for feed in sorted({r.feed for r in results}):
            rs = [r for r in results if r.feed == feed]
            statuses = ",".join(sorted({r.status for r in rs}))
            print(
                f"{feed:<20} {len(rs):>5} {statuses:<22} {sum(r.delivered_rows for r in rs):>11,} "
                f"{sum(r.staged_rows for r in rs):>11,} {sum(r.quarantined_rows for r in rs):>11,}"
            )
    else:
        print(describe(results))
    return 0 if all(r.ok for r in results) else 1


def _cmd_purge(args: argparse.Namespace) -> int:
    from kcure.core.staging import Staging

    cfg = load_config(args.conf)
    days = args.days if args.days is not None else float(cfg.pipeline["staging"]["retention_days"])
    removed = Staging(cfg.local_path("staging"), cfg.local_path("quarantine")).purge(days)
    print(f"removed {len(removed)} superseded staging version(s) older than {days:g} days")
    return 0


def _print_stage(name: str, s: dict[str, Any]) -> None:
    """What operators see as each stage of ``kcure build`` / ``kcure publish`` ends."""
    from kcure.stages.link import linker

    if name == "pseudonymize":
        missing = f"; nothing staged for {', '.join(s['missing'])}" if s.get("missing") else ""
        print(f"pseudonymize: {len(s['feeds'])} feeds in {s['seconds']:.1f}s{missing}")
    elif name == "link":
        staged = int(s["staged_rows"])
        print(linker.describe(s["report"]))
        print(f"link: {staged:,} staged rows in {s['seconds']:.1f}s ({staged / max(s['seconds'], 1e-9):,.0f} rows/s)")
        for table, why in (s.get("empty") or {}).items():
            print(f"  {table}: {why}")
        q = s.get("quality")
        if q:
            print(f"linkage against the generator's truth: precision {q['precision']:.6f}, recall {q['recall']:.6f}")
    elif name == "protect":
        p = s["privacy"]
        print(
            f"protect: k={p['k']}, smallest class {p['min_class_before']} -> {p['min_class_after']}, "
            f"{p['people_dropped']:,} of {p['people']:,} people dropped ({s['seconds']:.1f}s)"
        )
    elif name == "check":
        verdict = "all passed" if s["success"] else "FAILED"
        print(f"check: {len(s['checks'])} gates in {s['seconds']:.1f}s, {verdict}")
    elif name == "publish":
        total = sum(s["row_counts"].values())
        print(f"release {s['release']} published from build {s['build']} in {s['seconds']:.1f}s: {total:,} rows")
        for table, n in s["row_counts"].items():
            print(f"  {table:<6} {n:>12,} rows")
    elif name == "report":
        print(f"release report: {s['report']}")


def _run(args: argparse.Namespace, verb: str, **kw: Any) -> int:
    from kcure import cluster, pipeline
    from kcure.core import catalog, secrets

    cfg = load_config(args.conf)
    try:
        plan = pipeline.plan(cfg, **kw)
        if cluster.is_cluster(cfg):
            print(f"Spark stages are submitted to {cfg.spark['master']} with spark-submit")
        print(f"build {plan.build}: {' -> '.join(plan.stages)}")
        done = pipeline.run_plan(cfg, plan, on_stage=_print_stage)
    except secrets.SecretError as exc:
        print(f"kcure {verb}: {exc}", file=sys.stderr)
        return 2
    except (pipeline.StageFailed, catalog.ReleaseError, ValueError) as exc:
        print(f"kcure {verb}: {_short(exc, 2000)}", file=sys.stderr)
        return 1
    check = done.get("check")
    if check is not None and not check["success"]:
        for msg in check["failures"]:
            print(f"  {msg}", file=sys.stderr)
        print(f"kcure {verb}: release gates failed: build {plan.build} cannot be published", file=sys.stderr)
        return 1
    if check is not None and not plan.release:
        print(f"build {plan.build} passed its gates: publish it with kcure publish --build {plan.build} --release TAG")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    return _run(
        args, "build", build=args.build, release=args.release, truth=args.truth, start=args.start, stop=args.stop
    )


def _cmd_publish(args: argparse.Namespace) -> int:
    stop = "publish" if args.no_report else "report"
    return _run(args, "publish", build=args.build, release=args.release, start="publish", stop=stop)


def _cmd_purge_builds(args: argparse.Namespace) -> int:
    from kcure import pipeline

    cfg = load_config(args.conf)
    days = args.days if args.days is not None else float(cfg.pipeline["builds"]["retention_days"])
    removed = pipeline.purge_builds(cfg, days)
    print(f"removed {len(removed)} build folder(s) whose last stage ran more than {days:g} days ago")
    for path in removed:
        print(f"  {path}")
    return 0


def _cmd_spark_archive(args: argparse.Namespace) -> int:
    from kcure.core import classdata

    if args.background:
        if classdata.usable() is None:
            print(f"making the Spark class-data archive in the background (log: {classdata.background()})")
        return 0
    had = classdata.usable()
    try:
        path = classdata.make(force=args.force)
    except classdata.Busy as exc:
        print(f"{exc}: left to it")
        return 0
    if path is None:
        raise CliError("no java found (JAVA_HOME or PATH): Spark needs Java 17+")
    print(f"{'kept' if had == path and not args.force else 'made'} the Spark class-data archive {path}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from kcure.access import report
    from kcure.core import catalog

    cfg = load_config(args.conf)
    try:
        path = report.render(cfg, args.release)
    except catalog.ReleaseError as exc:
        print(f"kcure report: {exc}", file=sys.stderr)
        return 1
    print(f"release report: {path}")
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    import json

    from kcure.access import diff as D
    from kcure.core import catalog

    cfg = load_config(args.conf)
    try:
        d = D.diff(cfg, args.a, args.b)
    except catalog.ReleaseError as exc:
        print(f"kcure diff: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(d.to_dict(), indent=2) if args.json else D.describe(d))
    return 0


def _describe_release(cfg: Any, r: Any, figures: Any) -> list[str]:
    """``kcure releases show``: a release's manifest in readable form, every count a protected figure."""
    from kcure.access.report import report_path

    m, t = r.manifest, figures.threshold

    def n(v: int | None) -> str:
        return f"<{t}" if v is None else f"{v:,}"

    lines = [
        f"release {r.tag} (build {r.build}), published {r.created_at:%Y-%m-%d %H:%M:%S} UTC",
        f"code {m.get('code_version')}, configuration sha256 {m.get('config_digest')}",
        "tables:",
    ]
    empty = m.get("empty_tables") or {}
    for name in r.snapshots:
        why = f"; {empty[name]}" if name in empty else ""
        lines.append(
            f"  {name:<6} {n(figures.tables.get(name)):>12} rows, {n(figures.people.get(name)):>9} people"
            f"  (snapshot {r.snapshots[name]}{why})"
        )
    lines += [f"  {name:<6} {'-':>12}       ({empty[name]})" for name in sorted(set(empty) - set(r.snapshots))]
    lines.append(f"inputs: {len(m.get('inputs') or [])} feed-year deliveries")
    q = m.get("linkage_quality")
    if q:
        lines.append(f"linkage: precision {q['precision']:.6f}, recall {q['recall']:.6f} (against synthetic truth)")
    g = m.get("gates") or {}
    if g:
        checks = g.get("checks") or []
        warned = [c["check"] for c in checks if not c["success"] and c.get("severity") != "critical"]
        verdict = "all passed" if g.get("success") else "FAILED"
        lines.append(
            f"gates: {verdict} ({len(checks)} checks" + (f"; warnings: {', '.join(warned)}" if warned else "") + ")"
        )
    p = m.get("privacy") or {}
    if p:
        lines.append(
            f"privacy: k={p['k']}, smallest class {n(figures.privacy['min_class_before'])} -> {p['min_class_after']} "
            "after recoding, "
            f"{n(figures.privacy['people_dropped'])} of {n(figures.privacy['people'])} people dropped"
        )
    html = report_path(cfg, r.tag)
    lines.append(f"report: {html}" if html.exists() else f"report: not rendered yet (kcure report --release {r.tag})")
    return lines


def _list_releases(releases: list[Any]) -> list[str]:
    if not releases:
        return ["no releases yet"]
    w = max(14, *(len(r.tag) for r in releases), *(len(r.build) for r in releases))
    lines = [f"{'release':<{w}} {'published (UTC)':<20} {'build':<{w}} {'tables':>6}"]
    for i, r in enumerate(releases):
        latest = "  <- latest" if i == len(releases) - 1 else ""
        lines.append(f"{r.tag:<{w}} {r.created_at:%Y-%m-%d %H:%M:%S}  {r.build:<{w}} {len(r.snapshots):>6}{latest}")
    return lines


def _cmd_releases(args: argparse.Namespace) -> int:
    import json

    from kcure.access import query as access
    from kcure.access.figures import manifest_view, release_figures
    from kcure.core import catalog

    cfg = load_config(args.conf)
    cat = catalog.open_catalog(cfg)
    words = list(args.show)
    if words and words[0] == "show":
        words = words[1:]
        if not words:
            raise CliError("releases show: which release? (a tag or 'latest')")
    if len(words) > 1:
        raise CliError("usage: kcure releases [show] [TAG]")
    if not words:
        print("\n".join(_list_releases(catalog.list_releases(cat))))
        return 0
    if words[0] != "latest":
        _check_tag(words[0])
    r = catalog.resolve(cat, words[0])
    with access.open_release(cfg, r, cat) as con:
        figures = release_figures(cfg, r, con)
    print("\n".join(_describe_release(cfg, r, figures)))
    if args.json:
        print(json.dumps(manifest_view(r, figures), indent=2, default=str))
    return 0


def _write_result(table: Any, out: str) -> str:
    """The CLI writes results, never DuckDB: to ``out`` (.csv or .parquet), atomically."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path = Path(out)
    if path.suffix not in (".csv", ".parquet"):
        raise CliError(f"--out must name a .csv or .parquet file, not {_short(out, 80)}")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        pq.write_table(table, tmp) if path.suffix == ".parquet" else pcsv.write_csv(table, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CliError(f"cannot write {_short(out, 120)}: {exc.strerror or type(exc).__name__}") from None
    return str(path)


def _cmd_query(args: argparse.Namespace) -> int:
    import duckdb

    from kcure.access import query as access

    if args.project is not None:
        if args.release is not None:
            raise CliError("query: --project or --release, not both (a project sees only its extract)")
        from kcure.projects.commands import project_query

        return project_query(args)
    cfg = load_config(args.conf)
    if args.release is not None:
        _check_tag(args.release)
    result = access.query(cfg, args.sql, args.release)
    cut = (
        f" (cut at {result.table.num_rows:,} rows: conf/pipeline.yaml query.max_result_rows)"
        if result.truncated
        else ""
    )
    if args.out:
        print(f"wrote {result.table.num_rows:,} rows to {_write_result(result.table, args.out)}{cut}")
        return 0
    shown = result.table  # printed from memory by a plain DuckDB that runs no analyst SQL
    duckdb.connect().from_arrow(shown).show(max_rows=args.max_rows)
    if cut:
        print(cut.strip(" ()"))
    return 0


def _landing_commands(sub: Any) -> None:
    """The commands before a build: generate a synthetic landing zone, ingest it."""
    g = sub.add_parser(
        "generate",
        help="write a synthetic population as the ten source feeds' deliveries (docs/contract.md §2-3)",
        description="Write a synthetic population as the landing-zone deliveries of all ten feeds, "
        "with injected faults, and its ground truth under OUT/_truth/.",
    )
    size = g.add_mutually_exclusive_group(required=True)
    size.add_argument("--patients", type=int, help="cancer patients in the cohort")
    size.add_argument("--scale", type=float, help="fraction of K-CURE's 2.26 million patients (0.01 = 22,600)")
    g.add_argument("--seed", type=int, default=20240101, help="random seed (same seed and arguments: same bytes)")
    g.add_argument("--out", help="landing folder to write (default: the configured landing path)")
    g.add_argument("--part-rows", type=int, help="rows per part file before a feed-year is split")
    g.add_argument(
        "--corrupt-manifest",
        action="append",
        default=[],
        metavar="FEED:YEAR:rows|sha256",
        help="make that feed-year's manifest lie about its row count or checksum (repeatable)",
    )
    g.add_argument("--force", action="store_true", help="replace the contents of a non-empty --out")
    g.set_defaults(func=_cmd_generate)

    i = sub.add_parser(
        "ingest",
        help="verify, parse, quarantine, gate and stage the latest complete deliveries",
        description="Landing zone (local folder or s3://bucket/prefix) to typed, gated staging. "
        "Exit status 1 when any feed-year failed.",
    )
    i.add_argument("--landing", help="local folder or s3:// URL (default: the configured landing path)")
    i.add_argument("--feeds", nargs="+", metavar="FEED", help="only these feeds")
    i.add_argument("--years", nargs="+", metavar="YEAR", help="only these years")
    i.add_argument("--no-data-docs", action="store_true", help="skip rendering Great Expectations Data Docs")
    i.set_defaults(func=_cmd_ingest)


def _maintenance_commands(sub: Any) -> None:
    """Housekeeping: purging old staged versions and builds, and the Spark class-data archive."""
    pr = sub.add_parser("purge-staging", help="delete superseded staged versions older than the retention period")
    pr.add_argument("--days", type=float, help="override staging.retention_days from conf/pipeline.yaml")
    pr.set_defaults(func=_cmd_purge)

    pb = sub.add_parser(
        "purge-builds",
        help="delete build folders older than the retention period (a published build keeps its release's files)",
    )
    pb.add_argument("--days", type=float, help="override builds.retention_days from conf/pipeline.yaml")
    pb.set_defaults(func=_cmd_purge_builds)

    sa = sub.add_parser(
        "spark-archive",
        help="make the class-data archive local Spark stages start their JVM with (make install runs it)",
        description="A dynamic CDS archive of the classes a Spark stage loads, for this Java and these jars: "
        "each stage's JVM then maps them instead of loading them (measured: the time to a stage's first job "
        "fell from 8-12 s to 3.5-5 s on 2 cores). Kept when one "
        "exists; made again after Java or pyspark changes.",
    )
    sa.add_argument("--force", action="store_true", help="make it again even if a usable one exists")
    sa.add_argument(
        "--background", action="store_true", help="make it, if missing, in a detached process (stages use it once made)"
    )
    sa.set_defaults(func=_cmd_spark_archive)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kcure", description=__doc__)
    parser.add_argument("--conf", help="configuration folder (default: KCURE_CONF or the repository's conf/)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="keep the full traceback of a failure in reports/kcure-debug.log"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    _landing_commands(sub)

    il = sub.add_parser("ingest-log", help="what an ingest run (CLI or Airflow) did, per feed-year")
    il.add_argument("--run", help="run id (default: the last run)")
    il.add_argument("--by-feed", action="store_true", help="one line per feed instead of per feed-year")
    il.set_defaults(func=_cmd_ingest_log)

    b = sub.add_parser(
        "build",
        help="run a library build: pseudonymize, link, protect, check (and publish, report with --release)",
        description="staging -> pseudonymized/<build>/ -> linked/<build>/ -> protected/<build>/ -> gates, and "
        "with --release the Iceberg release and its report. Needs KCURE_LINKAGE_SECRET and KCURE_LIBRARY_SECRET "
        "(at least 32 bytes each).",
    )
    b.add_argument("--build", help="build id, for example 2024.1 (default: the time, YYYYMMDD-HHMMSS UTC)")
    b.add_argument("--truth", help="a synthetic population's _truth/ folder: also measure precision and recall")
    b.add_argument("--release", help="publish the build as this release tag when its gates pass")
    b.add_argument("--from", dest="start", choices=STAGE_NAMES, help="start at this stage (re-run a build from it)")
    b.add_argument("--to", dest="stop", choices=STAGE_NAMES, help="stop after this stage")
    b.set_defaults(func=_cmd_build)

    pu = sub.add_parser(
        "publish",
        help="publish a checked build as an immutable release of the library (Iceberg)",
        description="Publish protected/<build> as release TAG. Refuses unless the build's gates passed "
        "(kcure build, or jobs/check.py).",
    )
    pu.add_argument("--build", required=True)
    pu.add_argument("--release", required=True, help="release tag, for example 2024.1")
    pu.add_argument("--no-report", action="store_true", help="do not render the HTML release report")
    pu.set_defaults(func=_cmd_publish)

    rl = sub.add_parser("releases", help="list releases, or show one release's manifest")
    rl.add_argument("show", nargs="*", metavar="[show] TAG", help="show one release: a tag or 'latest'")
    rl.add_argument("--json", action="store_true", help="with a TAG: also print the whole manifest as JSON")
    rl.set_defaults(func=_cmd_releases)

    q = sub.add_parser(
        "query",
        help="run one SELECT in the query sandbox over a release's tables, or over a project's extract",
        description="One read-only SELECT (or WITH ... SELECT) over exactly the data files of one release "
        "(--release: the custodian's operators) or of one research project's extract (--project: its analysts, "
        "through the workspace service, audited): no other file, no network, no extension, no writes, no "
        "settings. Limits: conf/pipeline.yaml query.",
    )
    q.add_argument("sql")
    q.add_argument("--release", help="release tag (default: latest)")
    q.add_argument("--project", help="a research project's id: query its extract (tables RGST, T200, ...)")
    q.add_argument(
        "--out",
        help="write the result to a .csv or .parquet file instead of printing it (with --project: a plain "
        "name in your area of the project's workspace, the file that kcure export request names)",
    )
    q.add_argument("--max-rows", type=_positive, default=40, help="rows to print (default 40)")
    q.set_defaults(func=_cmd_query)

    rp = sub.add_parser("report", help="write the HTML release report (plots, gates, privacy, inputs)")
    rp.add_argument("--release", help="release tag (default: latest)")
    rp.set_defaults(func=_cmd_report)

    df = sub.add_parser("diff", help="what changed between two releases: schemas, row counts per table and year")
    df.add_argument("a", metavar="TAG_A")
    df.add_argument("b", metavar="TAG_B")
    df.add_argument("--json", action="store_true", help="print the difference as JSON")
    df.set_defaults(func=_cmd_diff)

    _maintenance_commands(sub)

    from kcure.projects.commands import add_parsers

    add_parsers(sub)
    return parser


class CliError(RuntimeError):
    """A command cannot do what was asked; the message is one line for the user."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse echoes the bad value: never a page of it
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {_short(message, 300)}\n")


def _short(text: object, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[:limit] + f"… ({len(s):,} characters)"


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{_short(value, 40)!r} is not a whole number of at least 1")
    return int(value)


def _check_tag(tag: str) -> str:
    from kcure.pipeline import check_id

    try:
        return check_id(tag, "release tag")
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _debug_log(args: argparse.Namespace) -> Path | None:
    """With -v, the full traceback of a failure goes here (owner-only), never to the terminal."""
    if not getattr(args, "verbose", False):
        return None
    try:
        path = load_config(getattr(args, "conf", None)).local_path("reports") / "kcure-debug.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    except (ConfigError, OSError):
        return None


def _fail(args: argparse.Namespace, exc: BaseException, code: int, shown: str | None = None) -> int:
    """One line on stderr; with -v the traceback goes to the operators' debug log."""
    import traceback

    where = _debug_log(args)
    if where is not None:
        fd = os.open(where, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as log:
            log.write("".join(traceback.format_exception(exc)) + "\n")
    hint = f" (details in {where})" if where else ("" if shown is None else " (kcure -v keeps the details)")
    print(f"kcure {args.command}: {_short(exc if shown is None else shown)}{hint}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    from kcure.access.sandbox import QueryRefused
    from kcure.core.catalog import ReleaseError
    from kcure.core.secrets import SecretError
    from kcure.core.zones import private_umask

    private_umask()  # everything kcure writes is its owner's alone unless it shares it explicitly
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"kcure: configuration error: {_short(exc, 600)}", file=sys.stderr)
        return 2
    except (CliError, QueryRefused, ReleaseError, SecretError) as exc:  # messages that hold no data value
        return _fail(args, exc, 2 if isinstance(exc, SecretError) else 1)
    except Exception as exc:  # the last line of defence: its message may quote data, so only its kind is shown
        return _fail(args, exc, 1, f"failed unexpectedly ({type(exc).__name__})")


if __name__ == "__main__":
    sys.exit(main())

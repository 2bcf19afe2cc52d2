"""Provisioning an approved project: its extract, manifest, dictionary, README and committee report.

``kcure project provision ID`` and the ``kcure_provision_project`` DAG both call :func:`provision`,
in the custodian's account (it owns KCURE_HOME, the release files and the project keys). It:

1. refuses unless the project's current version is approved (or provisioned: re-provisioning), is
   not expired, and asks for nothing finer than its earlier extract had (date precision, shift);
2. resolves the release the application names (``latest``: the newest) and lists exactly the data
   files of its snapshots;
3. loads the project's key, or makes it at the first provisioning (:mod:`kcure.projects.keys`);
4. runs the provision stage (:mod:`kcure.stages.provision.extract`) into a new folder, swapped in
   only when it passed its gate (or two reviewers recorded an exception), so a refusal leaves the
   earlier extract as it was;
5. writes ``manifest.json``, ``dictionary.md`` and ``README.md`` beside the extract, keeps a copy of
   the manifest and an HTML report for the committee under the project, and appends ``provisioned``
   (or ``provision_refused``, with the figures) to the project's log.

Layout (all the custodian's, owner-only)::

    projects/<id>/workspace/extract/<TABLE>/*.parquet   the extract
    projects/<id>/workspace/{manifest.json,dictionary.md,README.md}
    projects/<id>/provisions/<n>/{manifest.json,report.html}   kept after closing
    projects/<id>/state/given.parquet   what each project person was given (never finer again)
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.core.catalog import NAMESPACE, ReleaseError, open_catalog, resolve
from kcure.core.zones import clear, private_umask, restrict_tree, restricted_dir, write_json_atomic
from kcure.projects.application import Application, parse_application
from kcure.projects.keys import KeyStore
from kcure.projects.lifecycle import Caller, ProjectRefused, ProjectStore, State

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from kcure.core.config import Config

PRECISION_RANK = {"day": 0, "month": 1}


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def extract(self) -> Path:
        return self.workspace / "extract"

    @property
    def given(self) -> Path:
        return self.root / "state" / "given.parquet"

    def provision(self, n: int) -> Path:
        return self.root / "provisions" / str(n)


def key_store(cfg: Config) -> KeyStore:
    return KeyStore(cfg.project_path("keys", "keys/projects", env="KCURE_PROJECT_KEYS"))


def _previous(store: ProjectStore, state: State) -> dict[str, Any] | None:
    for e in reversed(state.events):
        if e["action"] == "provisioned":
            return dict(e)
    return None


def check(cfg: Config, store: ProjectStore, project: str, caller: Caller) -> tuple[State, Application]:
    """Whether the project may be provisioned now, by ``caller``: its state and current application."""
    if caller.uid != store.rules.custodian_uid:
        raise ProjectRefused("a project is provisioned by the custodian's account only")
    state = store.state(project)
    if state.status not in ("approved", "provisioned"):
        raise ProjectRefused(f"project {project} is {state.status}: only an approved application is provisioned")
    path = store.application_file(project, state.version)
    if hashlib.sha256(path.read_bytes()).hexdigest() != state.sha256:
        raise ProjectRefused(f"{path.name} is not the version the committee reviewed (its hash differs)")
    app = _application_unchecked_expiry(cfg, path)
    if app.expires <= date.today():
        raise ProjectRefused(f"project {project} expired on {app.expires}: it is closed, not provisioned")
    prev = _previous(store, state)
    if prev is not None:
        if PRECISION_RANK[app.date_precision] < PRECISION_RANK[prev.get("date_precision", "day")]:
            raise ProjectRefused(
                f"project {project} had {prev['date_precision']}-level dates: a re-provisioning never gives finer ones"
            )
        if prev.get("date_shift") and not app.date_shift:
            raise ProjectRefused(f"project {project} had shifted dates: a re-provisioning never removes the shift")
        weeks = cfg.privacy.extracts.shift_weeks if cfg.privacy.extracts else 0
        if prev.get("date_shift") and prev.get("shift_weeks", weeks) != weeks:
            raise ProjectRefused(
                f"project {project} was shifted within ±{prev['shift_weeks']} weeks; extracts.date_shift_weeks is now "
                f"{weeks}: another W would give each person a second shift, and comparing the two pins it"
            )
    return state, app


def _application_unchecked_expiry(cfg: Config, path: Path) -> Application:
    """The application as reviewed (its dates were checked at submission; the expiry is checked above)."""
    return parse_application(
        path.read_bytes(), path.name, cfg.library, cfg.privacy.window, user_exists=lambda _u: True, check_dates=False
    )


def release_files(cfg: Config, tag: str) -> tuple[Any, dict[str, list[str]]]:
    """The release and, per table, exactly the data files of its snapshot (local paths)."""
    cat = open_catalog(cfg)
    release = resolve(cat, tag)
    files = {}
    for name, sid in release.snapshots.items():
        scan = cat.load_table(f"{NAMESPACE}.{name}").scan(snapshot_id=sid)
        files[name] = [t.file.file_path.removeprefix("file://") for t in scan.plan_files()]
    return release, files


def provision(
    cfg: Config, store: ProjectStore, project: str, caller: Caller, *, spark: SparkSession | None = None
) -> dict[str, Any]:
    """Provision ``project``; returns its manifest. ProjectRefused (with the figures in the log) otherwise."""
    from kcure.stages.provision import extract as X

    private_umask()
    state, app = check(cfg, store, project, caller)
    try:
        release, files = release_files(cfg, app.release)
    except ReleaseError as e:
        raise ProjectRefused(f"project {project} targets release {app.release}: {e}") from None
    paths = Paths(store.folder(project))
    keys = key_store(cfg)
    key, created = keys.load_or_create(project)
    exceptions = state.exceptions
    exception = len(exceptions) >= store.rules.reviewers_required
    prior = X.given_from_parquet(paths.given)
    new = paths.workspace / "extract.new"
    restricted_dir(paths.workspace)
    clear(new)
    t0 = time.perf_counter()
    try:
        result = _run(cfg, spark, project, app, files, key, new, prior, exception)
    except X.ExtractRefused as e:
        store.note(project, caller, "provision_refused", release=release.tag, privacy=_brief(e.privacy))
        raise ProjectRefused(str(e)) from None
    try:
        seconds = round(time.perf_counter() - t0, 2)
        n = 1 + sum(1 for e in state.events if e["action"] == "provisioned")
        weeks = cfg.privacy.extracts.shift_weeks if cfg.privacy.extracts else 0
        manifest = _manifest(cfg, app, state, release, result, key.fingerprint(), created, exceptions, n, seconds)
        committee = {**manifest, "linkability": _linkability(cfg, store, project, key, new, files)}
        kept = paths.provision(n)
        restricted_dir(kept)
        write_json_atomic(kept / "manifest.json", committee, sort_keys=False)
        from kcure.projects.report import render

        render(cfg, committee, kept / "report.html")
        paths.given.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        X.given_to_parquet(X.merge_given(result.given, prior), paths.given)
    except BaseException:
        clear(new)
        raise
    _swap(new, paths.extract)
    _write_workspace(cfg, app, manifest, result.columns, paths)  # the analysts' copy: no other project in it
    restrict_tree(paths.root)
    digest = hashlib.sha256((kept / "manifest.json").read_bytes()).hexdigest()
    store.provisioned(
        project,
        caller,
        release=release.tag,
        manifest_sha256=digest,
        key=manifest["key_fingerprint"],
        date_precision=app.date_precision,
        date_shift=app.date_shift,
        shift_weeks=weeks if app.date_shift else 0,
        passed=result.privacy["passed"],
        exception=bool(result.privacy.get("exception")),
    )
    return {**committee, "report": str(kept / "report.html")}


def _run(
    cfg: Config, spark: SparkSession | None, project: str, app: Application, files: dict[str, list[str]],
    key: Any, new: Path, prior: Any, exception: bool,
) -> Any:  # fmt: skip
    """The provision stage in a Spark session (the given one, or one of its own); ``new`` is removed
    unless the stage completes."""
    from kcure.stages.provision import extract as X

    if spark is None:
        from kcure.core.spark import active_session

        spark = active_session()  # this process's running session: used, never stopped here
    own = spark is None
    if spark is None:
        from kcure.core.spark import build_session, files_mb

        mb = files_mb(f for table in files.values() for f in table)  # the release's files it reads
        spark = build_session(cfg.spark, app_name=f"kcure-provision-{project}", input_mb=mb)
    try:
        return X.run(spark, cfg, app, files, key, new, prior=prior, exception=exception)
    except BaseException:
        clear(new)  # a refusal or a crash leaves the earlier extract as it was, and nothing half-written
        raise
    finally:
        if own:
            spark.stop()


def _linkability(
    cfg: Config, store: ProjectStore, project: str, key: Any, extract: Path, files: dict[str, list[str]]
) -> list[Any]:
    """How linkable this extract is, through its content, with every other live project's extract
    (for the committee's copy of the manifest only: the analysts never see other projects)."""
    import pyarrow.parquet as pq

    from kcure.projects import linkability
    from kcure.projects.keys import ProjectKeyError

    people = {s for f in files.get("RGST", []) for s in pq.read_table(f, columns=["SN_KEY"]).column(0).to_pylist()}
    keys = key_store(cfg)
    out = []
    for other in store.ids():
        try:
            other_key = keys.load(other) if other != project else None
        except ProjectKeyError:
            other_key = None  # an unsafe key store is the other project's problem, not this one's
        there = Paths(store.folder(other)).extract
        if other_key is None or not there.is_dir():
            continue
        counts = linkability.measure(extract, key, there, other_key, people)
        if counts is not None:
            out.append({"project": other, **counts})
    return out


def _swap(new: Path, current: Path) -> None:
    """Replace the extract in two renames: a reader finds the old one, the new one, or (for an instant)
    none, never a mix of the two."""
    old = current.with_name("extract.old")
    clear(old)
    if current.exists():
        current.rename(old)
    new.rename(current)
    clear(old)


def _brief(privacy: dict[str, Any]) -> dict[str, Any]:
    keep = ("people", "smallest_candidates", "share_unique", "average_risk", "highest_risk", "passed")
    return {
        "passed": privacy.get("passed"),
        "person_level": {k: privacy["person_level"].get(k) for k in keep},
        "one_event": {m: {k: s.get(k) for k in keep} for m, s in privacy.get("one_event", {}).items()},
    }


def _manifest(
    cfg: Config,
    app: Application,
    state: State,
    release: Any,
    result: Any,
    fingerprint: str,
    created: bool,
    exceptions: list[dict[str, Any]],
    n: int,
    seconds: float,
) -> dict[str, Any]:
    return {
        "project": app.project,
        "provision": n,
        "provisioned_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "application": {
            "version": state.version,
            "sha256": app.sha256,
            "title": app.title,
            "approved_by": state.approvals,
            "expires": app.expires.isoformat(),
        },
        "release": {
            "tag": release.tag,
            "build": release.build,
            "snapshots": {t: release.snapshots[t] for t in app.tables if t in release.snapshots},
        },
        "cohort": result.privacy.get("cohort", {}),
        "tables": {
            name: {
                "years": list(app.tables[name].years),
                **result.tables[name],
                "columns": [c for c, _ in result.columns[name]],
            }
            for name in app.tables
        },
        "dates": {
            "precision": app.date_precision,
            "shift": app.date_shift,
            "shift_weeks": result.privacy.get("date_shift", {}).get("weeks", 0),
        },
        "privacy": result.privacy,
        "exception": [{"by": e["by"], "note": e.get("note", "")} for e in exceptions]
        if result.privacy.get("exception")
        else [],
        "key_fingerprint": fingerprint,
        "key_created": created,
        "seconds": seconds,
        "config_digest": cfg.digest,
    }


def _write_workspace(
    cfg: Config, app: Application, manifest: dict[str, Any], columns: dict[str, list[tuple[str, str]]], paths: Paths
) -> None:
    from kcure.projects.report import dictionary, readme

    write_json_atomic(paths.workspace / "manifest.json", manifest, sort_keys=False)
    (paths.workspace / "dictionary.md").write_text(dictionary(cfg, app, columns), encoding="utf-8")
    (paths.workspace / "README.md").write_text(readme(app, manifest), encoding="utf-8")


def close(cfg: Config, store: ProjectStore, project: str, caller: Caller, reason: str) -> State:
    """Close the project, then delete its extract and destroy its key; the manifests and the log stay."""
    store.close(project, caller, reason)
    paths = Paths(store.folder(project))
    removed = paths.workspace.exists()
    if removed:
        shutil.rmtree(paths.workspace)
    paths.given.unlink(missing_ok=True)
    destroyed = key_store(cfg).destroy(project)
    return store.note(project, caller, "destroyed", extract_removed=removed, key_destroyed=destroyed)


def close_expired(cfg: Config, store: ProjectStore, caller: Caller, today: date | None = None) -> list[str]:
    """Close every open project whose application has expired (the housekeeping DAG runs this daily)."""
    today = today or date.today()
    closed = []
    for project in store.ids():
        try:
            state = store.state(project)
        except ProjectRefused:  # a broken audit chain: reported by the chain check, never acted on
            continue
        if state.status in ("none", "closed"):
            continue
        app = _application_unchecked_expiry(cfg, store.application_file(project, state.version))
        if app.expires <= today:
            close(cfg, store, project, caller, "expired")
            closed.append(project)
    return closed


def summary_line(manifest: dict[str, Any]) -> str:
    p = manifest["privacy"]
    verdict = "passed" if p["passed"] else "FAILED, provisioned under the committee's exception"
    lines = [
        f"{manifest['project']} provisioned from release {manifest['release']['tag']} "
        f"(provision {manifest['provision']}, key {manifest['key_fingerprint']})",
        f"  cohort: {p['cohort']['kept']} people; tables: "
        + ", ".join(f"{t} {v['rows']:,} rows" for t, v in manifest["tables"].items()),
        f"  dates: {manifest['dates']['precision']} precision, "
        + (
            f"shifted by whole weeks within ±{manifest['dates']['shift_weeks']}"
            if manifest["dates"]["shift"]
            else "not shifted"
        ),
        f"  privacy gate {verdict} (prosecutor; k={p['k']}):",
        f"    person level: highest risk {p['person_level']['highest_risk']:.3f}, "
        f"smallest class {p['person_level']['smallest_candidates']}",
    ]
    for name, s in p["one_event"].items():
        lines.append(
            f"    {name}: {s['people']} people, average risk {s['average_risk']:.3f}, "
            f"{s['share_unique'] * 100:.1f}% unique, highest {s['highest_risk']:.3f}"
        )
    if p.get("one_event_not_released"):
        lines.append(f"    not applicable (no such dates in the extract): {', '.join(p['one_event_not_released'])}")
    recoded = sum(int(c["people"]) for c in p["costs"])
    lines.append(f"  recoding for this cohort: {recoded} values changed, {p['people_dropped']} people dropped")
    lines.append(f"  committee report: {manifest.get('report', '')}")
    return "\n".join(lines)

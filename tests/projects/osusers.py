"""Acting as other OS accounts: ``kcure`` in a forked child whose uid and groups are really that user's,
the way that account's own shell would run it. Root is needed to become them."""

from __future__ import annotations

import grp
import io
import json
import os
import pwd
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path


def preload(conf: Path) -> None:
    """Import what the CLI will need before the child drops root: the interpreter lives under /root."""
    from kcure import cli
    from kcure.access import query, sandbox  # noqa: F401
    from kcure.core import catalog, secrets, zones  # noqa: F401
    from kcure.core.config import load_config
    from kcure.projects import analysis, audit, exports, lineage, sdc  # noqa: F401

    cfg = load_config(conf)
    cfg.library  # noqa: B018
    cfg.privacy  # noqa: B018
    cli.build_parser().parse_args(["project", "list"])
    import duckdb
    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401

    duckdb.connect().close()


def as_user(
    user: str, conf: Path, env: dict[str, str], cwd: Path, *argv: str, groups: tuple[str, ...] = ()
) -> tuple[int, str, str]:
    """Run ``kcure <argv>`` as ``user`` (with ``groups`` besides its own); exit code, stdout, stderr."""
    from kcure import cli

    preload(conf)
    pw = pwd.getpwnam(user)
    gids = [pw.pw_gid] + [grp.getgrnam(g).gr_gid for g in groups]
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the user, run the command, report through the pipe
        code = 1
        out, err = io.StringIO(), io.StringIO()
        try:
            os.setgroups(gids)
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            os.environ.clear()
            os.environ.update({**env, "HOME": "/nonexistent", "USER": user})
            os.chdir(cwd)
            with redirect_stdout(out), redirect_stderr(err):
                code = cli.main(["--conf", str(conf), *argv])
        except BaseException as e:  # reported to the parent, never raised in the fork
            err.write(f"child failed: {type(e).__name__}: {e}")
        finally:
            os.write(out_w, json.dumps([code, out.getvalue(), err.getvalue()]).encode())
            os._exit(0)
    os.close(out_w)
    data = b""
    while chunk := os.read(out_r, 1 << 16):
        data += chunk
    os.close(out_r)
    os.waitpid(pid, 0)
    code, out, err = json.loads(data)
    return int(code), str(out), str(err)

"""Running a server as an unprivileged system user when we are root (PostgreSQL refuses root)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

from gateway.dev.child import EmbeddedServerError

__all__ = ["chown_tree", "ensure_system_user", "make_traversable", "run_as"]


def ensure_system_user(name: str) -> pwd.struct_passwd:
    """The system user `name`, created (no home, no shell) when it does not exist."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    # A concurrent process may create the user first; the lookup below settles it either way.
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [
            useradd,
            "--system",
            "--no-create-home",
            "--user-group",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        check=False,
        capture_output=True,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError as exc:
        msg = f"could not create system user {name!r} to run a server as (running as root)"
        raise EmbeddedServerError(msg) from exc


def run_as(name: str) -> pwd.struct_passwd | None:
    """The user to run a server as: the system user `name` when root, else None (ourselves)."""
    return ensure_system_user(name) if os.geteuid() == 0 else None


def make_traversable(path: Path) -> None:
    """Add o+x to every ancestor of `path` so an unprivileged user can reach it."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def chown_tree(root: Path, user: pwd.struct_passwd) -> None:
    """Give `root` and everything below it to `user` (unless it already owns `root`)."""
    if root.stat().st_uid == user.pw_uid:
        return
    os.chown(root, user.pw_uid, user.pw_gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(Path(dirpath) / name, user.pw_uid, user.pw_gid, follow_symlinks=False)

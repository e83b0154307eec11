"""Atomic writes: build at a temporary name beside the target, rename when complete.

A reader never sees a half-written checkpoint, export or dataset shard, and a crash leaves
the previous version intact.

Temporaries are named ``.{target name}.{host}-{pid}-{random}.tmp`` (a file, or a folder for
``atomic_directory``). A killed writer leaves its temporary behind (a TFRecord shard, an
export: up to gigabytes), so every atomic write first removes the stale temporaries of the
same target: those whose writer ran on this host under a process id that no longer exists.
A temporary is kept while its writer's pid is alive (another process writing the same
target now; or, rarely, an unrelated process that reused the pid: a stale file is then
removed on a later write), when it was written on another host (a shared filesystem: its
pid means nothing here), and when it has no pid in its name (written before this rule).

A folder that cannot be written (permissions, a read-only filesystem) and a full disk are an
``ObjdetError`` naming the target and the folder, not an ``OSError`` about a hidden
temporary.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from objdet.errors import ObjdetError

logger = logging.getLogger(__name__)

_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def require_writable_directory(directory: str | os.PathLike[str], writing: str) -> None:
    """``ObjdetError`` unless new files can be created in ``directory`` (or, while it does
    not exist yet, in its nearest existing ancestor, where it would be created).

    ``writing`` names what was to be written (``"model_dir runs/ssd"``). Checked before
    writing, so that a read-only folder is reported as itself rather than as the
    PermissionError of a hidden temporary file inside it.
    """
    existing = Path(directory)
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise ObjdetError(f"cannot write {writing}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ObjdetError(f"cannot write {writing}: {existing} is not writable (permission denied)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    """This host's name with only ``[A-Za-z0-9_]`` (``-`` separates the name's fields)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def temporary_prefix(target: Path) -> str:
    """``.{name}.{host}-{pid}-``: how this process's temporaries for ``target`` begin."""
    return f".{target.name}.{_host()}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove the temporaries of ``target`` whose writer is gone (see the module docstring);
    returns what was removed. Best effort: a temporary that cannot be removed is left."""
    pattern = re.compile(
        rf"^\.{re.escape(target.name)}\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp$"
    )
    host = _host()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or match["host"] != host or _pid_alive(int(match["pid"])):
            continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
            logger.info("removed %s, left by a writer (pid %s) that is gone", path, match["pid"])
    return removed


def _cannot_write(target: Path, error: OSError) -> ObjdetError:
    """The one-line error for an OSError while creating or filling ``target``'s temporary."""
    folder = target.parent
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    reason = (error.strerror or str(error)).lower()
    if error.errno in _NOT_WRITABLE:  # as require_writable_directory words it
        return ObjdetError(f"cannot write {target}: {folder} is not writable ({reason})")
    if error.errno in _NO_SPACE:
        return ObjdetError(f"cannot write {target}: no space left in {folder} ({reason})")
    return ObjdetError(f"cannot write {target} in {folder}: {reason}")


def _prepare(target: Path) -> None:
    """Check the folder, create it, and clean up after killed writers of ``target``."""
    require_writable_directory(target.parent, os.fspath(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cannot_write(target, error) from None
    remove_stale_temporaries(target)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync and rename it to ``path``."""
    target = Path(path)
    _prepare(target)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=temporary_prefix(target), suffix=".tmp", dir=target.parent
        )
    except OSError as error:
        raise _cannot_write(target, error) from None
    os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    finishing = False  # errors of the caller's block pass through as they are
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            finishing = True
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if finishing and isinstance(error, OSError):
            raise _cannot_write(target, error) from None
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path``.

    An existing directory at ``path`` is removed only after the new one is complete.
    """
    target = Path(path)
    _prepare(target)
    try:
        tmp_dir = Path(
            tempfile.mkdtemp(prefix=temporary_prefix(target), suffix=".tmp", dir=target.parent)
        )
    except OSError as error:
        raise _cannot_write(target, error) from None
    os.chmod(tmp_dir, 0o777 & ~_umask())
    finishing = False  # errors of the caller's block pass through as they are
    try:
        yield tmp_dir
        finishing = True
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp_dir, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_dir, target)
    except BaseException as error:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if finishing and isinstance(error, OSError):
            raise _cannot_write(target, error) from None
        raise

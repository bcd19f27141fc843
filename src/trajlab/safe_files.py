"""Writing a file at a path the user names: replace only a regular file that may be written.

trajlab writes its pages, tables and figures through a temporary file and an atomic rename
(:func:`trajlab.store.sweep_dir.atomic_write_bytes`), so a reader never sees half a file. A rename
replaces whatever directory entry has the target's name: run as root, ``--output /dev/null``
would replace the device node with a regular file. Before anything is written,
:func:`output_problem` says why a target is not ours to replace:

- a target that exists must be a **regular file**: a folder, a device node (``/dev/null``), a FIFO
  or a socket is refused;
- a **symbolic link** is refused: trajlab neither writes through it (the file it points to may be
  anyone's: a link planted in a shared folder must not redirect a page onto another file) nor
  replaces the link itself. Give the path of the file itself. Links among the *folders* above
  the target are followed, as by any program (``results -> /scratch/results`` works);
- **permissions** are respected, also by root, who passes every access check of the kernel: a
  file (or the folder it goes into) with no write permission bit at all (mode 0444, 0555) is
  read-only and is not replaced; otherwise :func:`os.access` decides;
- the folder it goes into, or the nearest existing folder above it when folders are to be
  created, must be a folder that may be written into.

The check is made when a command starts (so that nothing is computed for a page that cannot be
written) and again just before the rename. Between that last check and the rename, whoever may
write the target's folder can still put another entry in its place: that person can replace the
entry anyway. A replaced file gets mode 0644 (the store's mode for shared results) and the
writer's ownership; other hard links to the old file keep its old content.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from trajlab.errors import TrajlabError

__all__ = ["OutputError", "check_output", "folder_problem", "output_problem", "write_output"]

_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


class OutputError(TrajlabError):
    """A file cannot be written where the user asked: ``option: cannot write 'path' (reason)``."""

    def __init__(self, option: str, path: str | os.PathLike, reason: str):
        self.option, self.path, self.reason = option, Path(path), reason
        prefix = f"{option}: " if option else ""
        super().__init__(f"{prefix}cannot write {str(path)!r} ({reason})")


def _read_only(path: Path, st: os.stat_result, mode: int) -> bool:
    """No write permission bit at all (checked by hand: root passes os.access), or os.access says no."""
    return not (st.st_mode & 0o222) or not os.access(path, mode)


def _kind(st: os.stat_result) -> str:
    for test, name in _KINDS:
        if test(st.st_mode):
            return name
    return "not a regular file"


def folder_problem(folder: str | os.PathLike) -> str | None:
    """Why files cannot be written into ``folder`` (created if missing), or None; creates nothing."""
    folder = Path(folder).absolute()
    existing = folder
    while True:
        try:
            st = os.stat(existing)  # links among the folders are followed
            break
        except FileNotFoundError:
            if existing.parent == existing:
                return f"{existing} does not exist"
            existing = existing.parent
        except NotADirectoryError:
            existing = existing.parent  # a regular file on the way: found and named below
        except OSError as error:
            return f"{existing}: {error.strerror or error}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{existing} is not a folder"
    if _read_only(existing, st, os.W_OK | os.X_OK):
        return f"the folder {existing} is read-only" if not (st.st_mode & 0o222) else f"permission denied in {existing}"
    return None


def output_problem(path: str | os.PathLike) -> str | None:
    """Why trajlab must not write (replace) the file ``path``, or None (module docstring); creates nothing."""
    path = Path(path)
    if not str(path).strip():
        return "empty path; give the path of a file"
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        st = None  # absent, or a file on the way: folder_problem names it
    except OSError as error:
        return error.strerror or str(error)
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            return (
                f"a symbolic link to {target}; trajlab neither writes through a link nor replaces it: "
                "give the path of the file itself"
            )
        if stat.S_ISDIR(st.st_mode):
            return "a folder; give the path of a file"
        if not stat.S_ISREG(st.st_mode):
            return f"exists and is {_kind(st)}, not a regular file; trajlab replaces only regular files"
        if _read_only(path, st, os.W_OK):
            return f"a read-only file (mode {stat.S_IMODE(st.st_mode):04o}); trajlab does not replace it"
    return folder_problem(path.absolute().parent)


def check_output(path: str | os.PathLike, option: str = "") -> None:
    """Raise :class:`OutputError` naming ``option`` when ``path`` must not be written."""
    reason = output_problem(path)
    if reason:
        raise OutputError(option, path, reason)


def write_output(path: str | os.PathLike, data: bytes, option: str = "") -> None:
    """Write ``data`` to ``path`` atomically after :func:`check_output`; folders above are created.

    Any failure (a refused target, a full disk, permissions) is an :class:`OutputError`; a failed
    write leaves the old file (if any) as it was and no temporary file behind.
    """
    from trajlab.store.sweep_dir import atomic_write_bytes

    path = Path(path)
    check_output(path, option)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        check_output(path, option)  # again, right before the rename
        atomic_write_bytes(path, data)
    except OSError as error:
        raise OutputError(option, path, error.strerror or str(error)) from None

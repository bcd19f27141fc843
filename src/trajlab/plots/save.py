"""Saving a figure: PNG and SVG, written atomically, only over regular files that may be written."""

from __future__ import annotations

import errno
import os
import stat
import uuid
from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["save_figure"]

FORMATS = ("png", "svg")  # the files save_figure writes, in this order


def save_figure(fig: Figure, folder: str | os.PathLike, name: str) -> list[Path]:
    """Write ``fig`` as ``<folder>/<name>.png`` (dpi 150) and ``<folder>/<name>.svg``; return the paths.

    Each file is written atomically: rendered to a temporary file in ``folder`` and moved into
    place with ``os.replace``, so a reader never sees a half-written figure. The folder is
    created if needed. The figure is closed afterwards (removed from pyplot if pyplot manages
    it; a figure made with ``Figure()`` is simply released).

    A target that exists and is not a regular file that may be replaced (a folder, a device node,
    a symbolic link, a file without write permission, also for root) is refused with a
    FileExistsError before anything is written, and checked again right before the rename (the
    rule of ``trajlab.safe_files``, which the command line applies first, with its messages). A
    failed write (a full disk) raises its OSError and leaves no temporary file behind.
    """
    if not name or os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise ValueError(f"name must be a plain file name without folders, got {name!r}")
    folder = Path(folder)
    paths = []
    try:
        for fmt in FORMATS:
            _check_replaceable(folder / f"{name}.{fmt}")
        folder.mkdir(parents=True, exist_ok=True)
        for fmt in FORMATS:
            target = folder / f"{name}.{fmt}"
            # Not tempfile.mkstemp: its 0600 mode would survive os.replace; open(..., "xb")
            # creates the file with the umask's usual permissions.
            tmp = folder / f".{name}.{fmt}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
            try:
                with open(tmp, "xb") as fh:
                    fig.savefig(fh, format=fmt, dpi=150)
                _check_replaceable(target)  # again, right before the rename
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            paths.append(target)
    finally:
        _close(fig)
    return paths


def _check_replaceable(target: Path) -> None:
    """Raise FileExistsError unless ``target`` is absent or a regular file with a write permission
    bit that this process may write (root passes os.access: the mode bits are checked too)."""
    try:
        st = os.lstat(target)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISLNK(st.st_mode):
        reason = "is a symbolic link (never written through, never replaced)"
    elif not stat.S_ISREG(st.st_mode):
        reason = "exists and is not a regular file"
    elif not (st.st_mode & 0o222) or not os.access(target, os.W_OK):
        reason = "is a read-only file"
    else:
        return
    raise FileExistsError(errno.EEXIST, f"{target} {reason}; not replaced", str(target))


def _close(fig: Figure) -> None:
    manager = getattr(fig.canvas, "manager", None)
    if manager is not None:  # registered with pyplot: drop it from the registry
        import matplotlib.pyplot as plt

        plt.close(fig)

"""Saving a figure: PNG and SVG, written atomically."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["save_figure"]


def save_figure(fig: Figure, folder: str | os.PathLike, name: str) -> list[Path]:
    """Write ``fig`` as ``<folder>/<name>.png`` (dpi 150) and ``<folder>/<name>.svg``; return the paths.

    Each file is written atomically: rendered to a temporary file in ``folder`` and moved into
    place with ``os.replace``, so a reader never sees a half-written figure. The folder is
    created if needed. The figure is closed afterwards (removed from pyplot if pyplot manages
    it; a figure made with ``Figure()`` is simply released).
    """
    if not name or os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise ValueError(f"name must be a plain file name without folders, got {name!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        for fmt in ("png", "svg"):
            target = folder / f"{name}.{fmt}"
            # Not tempfile.mkstemp: its 0600 mode would survive os.replace; open(..., "xb")
            # creates the file with the umask's usual permissions.
            tmp = folder / f".{name}.{fmt}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
            try:
                with open(tmp, "xb") as fh:
                    fig.savefig(fh, format=fmt, dpi=150)
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            paths.append(target)
    finally:
        _close(fig)
    return paths


def _close(fig: Figure) -> None:
    manager = getattr(fig.canvas, "manager", None)
    if manager is not None:  # registered with pyplot: drop it from the registry
        import matplotlib.pyplot as plt

        plt.close(fig)

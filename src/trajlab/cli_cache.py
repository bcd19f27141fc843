"""A cache of what ``trajlab list`` and ``trajlab config`` print, so they answer in a fraction of a second.

Listing the presets or resolving one's config needs every preset module, and they import JAX,
pandas and the families (about 1.3 s of CPU on a 2-core machine). What they print depends only on
trajlab's own source (the built-in families, problems and presets), the command's arguments and
the terminal width, so the text is kept in ``~/.cache/trajlab/cli`` (``$XDG_CACHE_HOME`` when set)
under a key made of all of those: the path, size and modification time of every ``.py`` file of
the installed package, the Python executable, the arguments and the width. Any edit of trajlab's
source, an upgrade, or other arguments make a new key, so a stale answer cannot be printed.
Commands that read a user's file (``trajlab list my.py``, ``trajlab config my.py:NAME``) and
errors are never cached. ``TRAJLAB_CLI_CACHE=0`` turns the cache off.

Only the standard library is imported here.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_KEEP = 64  # entries kept; older ones are removed


def enabled() -> bool:
    return os.environ.get("TRAJLAB_CLI_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def folder() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "trajlab" / "cli"


def source_fingerprint() -> str:
    """Path, size and mtime (ns) of every .py file of the trajlab package, hashed."""
    digest = hashlib.sha256()
    for directory, subdirectories, files in os.walk(_PACKAGE):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                digest.update(f"{os.path.relpath(path, _PACKAGE)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _registered() -> list:
    """In a process that already holds registries (a notebook, a test, a plug-in imported first), what
    is registered in them; nothing in a fresh ``trajlab`` process, where only the built-ins can be."""
    state = []
    presets = sys.modules.get("trajlab.presets")
    if presets is not None:
        state.append(sorted((name, id(p)) for name, p in getattr(presets, "PRESETS", {}).items()))
    registry = sys.modules.get("trajlab.registry")
    if registry is not None:
        for table in ("_FAMILIES", "_PROBLEMS", "FAMILIES", "PROBLEMS"):
            value = getattr(registry, table, None)
            if isinstance(value, dict):
                state.append(sorted((name, id(v)) for name, v in value.items()))
    return state


def key(command: str, arguments: list, width) -> str:
    document = json.dumps(
        [command, arguments, width, sys.executable, sys.version, str(_PACKAGE), source_fingerprint(), _registered()],
        sort_keys=True,
    )
    return hashlib.sha256(document.encode()).hexdigest()


def read(entry: str) -> str | None:
    if not enabled():
        return None
    try:
        return (folder() / f"{entry}.txt").read_text()
    except (OSError, UnicodeDecodeError):
        return None


def write(entry: str, text: str) -> None:
    """Store ``text`` atomically (a temporary file renamed); failures are ignored (a read-only home)."""
    if not enabled():
        return
    directory = folder()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f".{entry}.{os.getpid()}.tmp"
        temporary.write_text(text)
        os.replace(temporary, directory / f"{entry}.txt")
        entries = sorted(directory.glob("*.txt"), key=lambda p: p.stat().st_mtime)
        for old in entries[:-_KEEP]:
            old.unlink(missing_ok=True)
    except OSError:
        pass

"""A sweep folder: a manifest, the finished runs and their trajectories, the baselines.

Layout::

    manifest.json                       configs by run id, presets, versions, device, executor
    runs.parquet                        consolidated finished runs (one row per run)
    trajectories.parquet                consolidated trajectories
    runs/batch-<key>.parquet            one file per finished batch, not yet consolidated
    trajectories/batch-<key>.parquet    the trajectories of that batch
    baselines.parquet                   one row per (problem, baseline), keyed by ``baseline_id``

- runs tables: config fields by dotted name, ``run_id``, ``status`` in {done, max_steps,
  diverged}, ``steps``, ``wall_s``, ``final.<metric>``.
- trajectories tables: ``run_id``, ``step``, ``t`` (= step x lr), one column per metric.
- baselines table: ``baseline_id``, then the baseline's own columns.

What is read is checked, so that a damaged or foreign file is one line naming it
(:class:`~trajlab.errors.TrajlabError`), never a traceback or a wrong result:

- the manifest is a JSON object; ``configs`` maps run ids to objects, ``presets`` is a list of
  names, ``preset_sources`` maps names to ``file.py:NAME``, ``versions`` is an object,
  ``run_id_scheme`` an integer (other keys are kept as they are, for later versions);
- each table has its required columns with their types (ids are strings without gaps, ``status``
  one of the three above, ``steps`` / ``step`` non-negative integers, final values and trajectory
  metrics numeric, names unique); a file that fails counts for nothing: a resume does not treat its
  runs as finished;
- every parquet file is written with page checksums (CRC32 of each data page, verified on read)
  and a content hash of the decoded table in its key-value metadata under ``trajlab.sha256``
  (sha256 over the column names, types and values, and the pandas metadata; see
  :func:`content_hash`), verified on read. The hash also covers what page checksums cannot: the
  footer (column names, types, row counts). Files without them (written by trajlab 0.1, or by
  pandas directly) are read as before. (pyarrow < 15 cannot write page checksums: there the
  content hash alone guards the files.)

Why batch files: several worker processes (Dask workers, SLURM jobs, threads on several GPUs)
finish batches at the same time. Each writes its own pair of files, named by ``<key>`` = a hash
of the batch's run ids, so no two writers ever write the same file unless they computed the same
runs (then the later rename simply replaces an equal result). The coordinating process
(:func:`trajlab.sweep.run_sweep`) then *consolidates*: it merges the batch files into the
root ``runs.parquet`` / ``trajectories.parquet`` and deletes them, under an exclusive lock on
the folder, so that a finished sweep has the single-file layout that older folders have and that
``pd.read_parquet(folder / "runs.parquet")`` reads. Readers never depend on consolidation having
happened: :meth:`SweepStore.read_runs`, :meth:`SweepStore.read_trajectories`,
:meth:`SweepStore.completed_run_ids` and :func:`load` merge the root files and every batch file.

Crash safety:

- Every file is written whole to a temporary file in the same folder and renamed over its target
  (``os.replace`` is atomic on POSIX), so no reader ever sees half a file. Temporary files start
  with ``.`` and end in ``.tmp``; readers ignore them. Their names carry the writer's host and
  pid, so :meth:`SweepStore.prepare` deletes only those of dead processes on this host (or any
  older than a day), never a live worker's.
- A batch writes its trajectories file before its runs file, and a run counts as finished once a
  runs file holding it is visible. A writer killed between the two writes leaves a trajectories
  file without runs file: readers ignore it, resuming recomputes those runs.
- Merging dedupes by run id (the same run finished twice, e.g. when a worker died after writing
  and its batch was run again): the most recently written batch wins, the root files count as
  oldest, and a run's trajectory rows come from the same file as its runs row.
- Consolidation writes the root trajectories, then the root runs, then deletes the merged runs
  batch files, then their trajectories files; readers read batch files before the root files, and
  the root runs file before the root trajectories file. So a reader concurrent with a
  consolidation still sees every finished run, with its trajectory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from trajlab.errors import TrajlabError

MANIFEST = "manifest.json"
FILE_MODE = 0o644  # mkstemp makes 0600 files; results are meant to be shared
RUNS = "runs.parquet"
TRAJECTORIES = "trajectories.parquet"
BASELINES = "baselines.parquet"
RUNS_DIR = "runs"
TRAJECTORIES_DIR = "trajectories"
BATCH_PATTERN = "batch-*.parquet"
LOCK_FILE = ".consolidate.lock"  # only where the folder itself cannot be locked (NFS)
# A temporary file whose writer cannot be checked (another host, an old name) is left alone for a
# day: no write takes that long, and a leftover file costs nothing (readers ignore it).
STALE_TEMP_S = 24 * 3600
# A trajectories batch file without its runs file is a batch whose writer died between the two
# writes (they are back to back, seconds apart): after an hour it is safe to delete.
ORPHAN_AGE_S = 3600
_ROOT = -1  # merge rank of the consolidated root files: older than any batch file


def _host() -> str:
    return socket.gethostname().replace("~", "-").replace(os.sep, "-") or "host"


def _temp_prefix(name: str) -> str:
    """``.<target>~<host>~<pid>~``: whose temporary file this is, so that cleanup spares live writers."""
    return f".{name}~{_host()}~{os.getpid()}~"


def _mkstemp(path: Path, create_parent: bool) -> tuple[int, str]:
    # A concurrent consolidation may remove an empty batch folder between our mkdir and mkstemp.
    for attempt in range(5):
        if create_parent:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix=".tmp")
        except FileNotFoundError:
            if not create_parent or attempt == 4:
                raise
    raise AssertionError("unreachable")


def _atomic_write(path: Path, write: Callable[[str], None], create_parent: bool = False) -> None:
    """Write ``path`` through ``write(temporary path)``, fsync, chmod 0o644 and an atomic rename."""
    path = Path(path)
    fd, tmp = _mkstemp(path, create_parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)

    _atomic_write(Path(path), write)


def _shown(path: Path) -> str:
    """``path`` for a one-line message (control characters in a name would break the line)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _short(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters: a name from a file, quoted on one line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- parquet files: written with checksums, read with every check ---------------------------------

#: Key of the content hash in a parquet file's key-value metadata (module docstring).
HASH_KEY = b"trajlab.sha256"


def _type_tag(kind) -> str:
    """A column type, up to what a parquet round trip may change (string vs large_string, the name
    of a list's element field, a dictionary's index type)."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        return _type_tag(kind.value_type)
    if isinstance(kind, pa.ExtensionType):
        return _type_tag(kind.storage_type)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or str(kind) == "string_view":
        return "string"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or str(kind) == "binary_view":
        return "binary"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind) or (
        str(kind).startswith("list_view") or str(kind).startswith("large_list_view")
    ):
        return f"list<{_type_tag(kind.value_type)}>"
    if pa.types.is_struct(kind):
        fields = (kind.field(i) for i in range(kind.num_fields))
        return "struct<" + ",".join(f"{field.name}:{_type_tag(field.type)}" for field in fields) + ">"
    if pa.types.is_map(kind):
        return f"map<{_type_tag(kind.key_type)},{_type_tag(kind.item_type)}>"
    return str(kind)


def _array_digest(digest, array) -> None:
    """Feed one column's values to ``digest`` in a form that does not depend on how the column is
    laid out in memory (chunks, offsets, padding, the bytes under null slots)."""
    import numpy as np
    import pyarrow as pa

    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if isinstance(array.type, pa.ExtensionType):
        array = array.storage
    kind = array.type
    digest.update(f"{_type_tag(kind)}|{len(array)}|".encode())
    if len(array) == 0 or pa.types.is_null(kind):
        return
    nulls = array.is_null().to_numpy(zero_copy_only=False)
    digest.update(np.packbits(nulls).tobytes())
    if pa.types.is_boolean(kind):
        digest.update(np.packbits(array.fill_null(False).to_numpy(zero_copy_only=False)).tobytes())
        return
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) or (
        pa.types.is_large_binary(kind)
    ):
        array = array.cast(pa.large_binary()).fill_null(b"")
        offsets = np.frombuffer(array.buffers()[1], np.int64, count=len(array) + 1, offset=array.offset * 8)
        digest.update((offsets - offsets[0]).tobytes())
        if array.buffers()[2] is not None:
            digest.update(memoryview(array.buffers()[2])[offsets[0] : offsets[-1]])
        return
    fixed = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind) or (
        pa.types.is_decimal(kind) or pa.types.is_fixed_size_binary(kind)
    )
    if fixed and kind.bit_width % 8 == 0 and len(array.buffers()) == 2:
        width = kind.bit_width // 8
        raw = np.frombuffer(array.buffers()[1], np.uint8, count=len(array) * width, offset=array.offset * width)
        raw = raw.reshape(len(array), width).copy()
        raw[nulls] = 0
        digest.update(raw.tobytes())
        return
    try:  # nested and rare types: slower, same answer
        text = repr(array.to_pylist())
    except Exception:  # values Python cannot hold (a date beyond year 9999)
        text = array.to_string(window=len(array), container_window=len(array))
    digest.update(text.encode())


def content_hash(table) -> str:
    """sha256 (hex) of a pyarrow table's contents: row count, column names, types and values, and
    the schema's key-value metadata (the pandas metadata, which names and types the DataFrame's
    columns) except :data:`HASH_KEY` itself. Equal for a table and its parquet round trip."""
    digest = hashlib.sha256(b"trajlab content hash 1\n")
    digest.update(f"{table.num_rows}|{table.num_columns}\n".encode())
    metadata = table.schema.metadata or {}
    for key in sorted(k for k in metadata if k != HASH_KEY):
        digest.update(hashlib.sha256(key).digest() + hashlib.sha256(metadata[key]).digest())
    for name, column in zip(table.column_names, table.columns):
        digest.update(hashlib.sha256(name.encode("utf-8", "surrogatepass")).digest())
        _array_digest(digest, column.combine_chunks())
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def _page_checksums() -> bool:
    """Whether this pyarrow writes and verifies page checksums (its Python API has them since 15.0)."""
    import inspect

    import pyarrow.parquet as pq

    return "page_checksum_verification" in inspect.signature(pq.ParquetFile).parameters


def _atomic_write_parquet(frame: pd.DataFrame, path: Path, create_parent: bool = False) -> None:
    """Write ``frame`` with page checksums and its :func:`content_hash` (module docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[HASH_KEY] = content_hash(table).encode()
    table = table.replace_schema_metadata(metadata)
    options = {"write_page_checksum": True} if _page_checksums() else {}
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp, **options), create_parent)


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _unreadable(path: Path, error: Exception | str) -> TrajlabError:
    reason = error if isinstance(error, str) else _reason(error)
    return TrajlabError(
        f"{_shown(path)}: not a readable parquet file ({reason}); move it aside to recompute what it held"
    )


def _invalid(path: Path, kind: str, what: str) -> TrajlabError:
    return TrajlabError(f"{_shown(path)}: not a valid {kind} table ({what}); move it aside to recompute what it held")


def _regular_file(path: Path, what: str) -> bool:
    """Whether ``path`` is there (False if absent); TrajlabError if it is something else than a
    regular file (a folder, a FIFO that would block a reader, a socket)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as error:
        raise TrajlabError(f"{_shown(path)}: cannot read the {what} ({error.strerror or error})") from None
    if not stat.S_ISREG(mode):
        raise TrajlabError(f"{_shown(path)}: not a valid {what} (not a regular file); move it aside")
    return True


_STATUSES = ("done", "max_steps", "diverged")
#: Required columns of each kind of table, then columns whose values must be numbers.
_REQUIRED = {"runs": ("run_id", "status", "steps"), "trajectories": ("run_id", "step"), "baselines": ("baseline_id",)}
_NUMERIC_RUN_COLUMNS = ("wall_s", "gradient_evaluations")
_RESERVED = "_source"  # the merge's own column (_Snapshot)


def _all_missing(series: pd.Series) -> bool:
    return series.dtype == object and bool(series.isna().all())


def _check_strings(path: Path, kind: str, frame: pd.DataFrame, column: str) -> None:
    series = frame[column]
    if len(series) == 0:
        return
    if series.isna().any():
        raise _invalid(path, kind, f"{column!r} has missing values")
    if pd.api.types.infer_dtype(series, skipna=False) != "string":
        raise _invalid(path, kind, f"{column!r} holds {series.dtype} values, expected strings")


def _check_counts(path: Path, kind: str, frame: pd.DataFrame, column: str) -> None:
    series = frame[column]
    if len(series) == 0 and series.dtype == object:
        return
    if not pd.api.types.is_integer_dtype(series.dtype):
        raise _invalid(path, kind, f"{column!r} holds {series.dtype} values, expected integers")
    if series.isna().any():
        raise _invalid(path, kind, f"{column!r} has missing values")
    if len(series) and series.min() < 0:
        raise _invalid(path, kind, f"{column!r} has negative values")


def _check_numbers(path: Path, kind: str, frame: pd.DataFrame, column: str) -> None:
    series = frame[column]
    dtype = series.dtype
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return
    if len(series) == 0 or _all_missing(series):
        return
    raise _invalid(path, kind, f"{_short(column)} holds {dtype} values, expected numbers")


def _validate(path: Path, kind: str, frame: pd.DataFrame) -> None:
    """Raise TrajlabError if ``frame`` (read from ``path``) is not a table of ``kind`` (module docstring)."""
    if frame.shape == (0, 0):
        return  # an empty table: what consolidating nothing writes
    names = list(frame.columns)
    for name in names:
        if not isinstance(name, str):
            raise _invalid(path, kind, f"column name {_short(name)} is not a string")
    if len(set(names)) != len(names):
        twice = next(name for name in names if names.count(name) > 1)
        raise _invalid(path, kind, f"column {_short(twice)} appears twice")
    if _RESERVED in names:
        raise _invalid(path, kind, f"column {_RESERVED!r} is reserved")
    for column in _REQUIRED[kind]:
        if column not in frame.columns:
            raise _invalid(path, kind, f"no {column!r} column")
    _check_strings(path, kind, frame, _REQUIRED[kind][0])
    if kind == "runs":
        _check_strings(path, kind, frame, "status")
        unknown = sorted(set(frame["status"]) - set(_STATUSES))
        if unknown:
            raise _invalid(path, kind, f"'status' {_short(unknown[0])} is not one of {', '.join(_STATUSES)}")
        _check_counts(path, kind, frame, "steps")
        for column in names:  # config columns hold whatever the config's fields hold
            if column in _NUMERIC_RUN_COLUMNS or column.startswith("final."):
                _check_numbers(path, kind, frame, column)
    elif kind == "trajectories":
        _check_counts(path, kind, frame, "step")
        for column in names:
            if column not in _REQUIRED[kind]:
                _check_numbers(path, kind, frame, column)


def _read_frame(path: Path, kind: str) -> pd.DataFrame | None:
    """The ``kind`` table at ``path`` ("runs", "trajectories" or "baselines"), checked; None if
    absent (or removed while we read it, by a consolidation).

    A file that is not valid parquet, fails its page checksums or content hash, or is not a table
    of ``kind`` is a TrajlabError naming it.
    """
    import pyarrow.parquet as pq

    if not _regular_file(path, "parquet file"):
        return None
    try:
        # Opened once: a consolidation that replaces or deletes the file meanwhile does not affect us.
        with open(path, "rb") as handle:
            options = {"page_checksum_verification": True} if _page_checksums() else {}
            table = pq.ParquetFile(handle, **options).read()
    except FileNotFoundError:
        return None
    except Exception as error:  # pyarrow raises several types for damaged or foreign files
        raise _unreadable(path, error) from None
    stored = (table.schema.metadata or {}).get(HASH_KEY)
    if stored is not None:
        try:
            actual = content_hash(table)
        except Exception as error:
            raise _unreadable(path, error) from None
        if stored != actual.encode():
            raise _unreadable(path, "damaged: its contents do not match the checksum written with it")
    try:
        frame = table.to_pandas()
    except Exception as error:
        raise _unreadable(path, error) from None
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index(drop=True)
    _validate(path, kind, frame)
    return frame


# --- the manifest ---------------------------------------------------------------------------------


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _manifest_problem(manifest: Any) -> str | None:
    """What is wrong with a parsed manifest (module docstring: its schema), or None."""
    if not isinstance(manifest, dict):
        return f"{_json_kind(manifest)}, expected an object"
    configs = manifest.get("configs", {})
    if not isinstance(configs, dict):
        return f"'configs' is {_json_kind(configs)}, expected an object of configs by run id"
    for run, config in configs.items():
        if not isinstance(config, dict):
            return f"configs[{_short(run)}] is {_json_kind(config)}, expected an object of config fields"
    presets = manifest.get("presets", [])
    if not isinstance(presets, list) or not all(isinstance(name, str) for name in presets):
        return "'presets' is not an array of preset names"
    sources = manifest.get("preset_sources", {})
    if not isinstance(sources, dict) or not all(isinstance(source, str) for source in sources.values()):
        return "'preset_sources' is not an object of file.py:NAME strings by preset"
    if not isinstance(manifest.get("versions", {}), dict):
        return f"'versions' is {_json_kind(manifest['versions'])}, expected an object"
    scheme = manifest.get("run_id_scheme", 1)
    if isinstance(scheme, bool) or not isinstance(scheme, int):
        return f"'run_id_scheme' is {_json_kind(scheme)}, expected an integer"
    for key in ("device", "platform", "executor", "updated", "git_commit"):
        value = manifest.get(key)
        if value is not None and not isinstance(value, str):
            return f"{key!r} is {_json_kind(value)}, expected a string"
    return None


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame()
    # Tables without rows add nothing but could change the merged columns' types (an empty column
    # of strings beside integers makes them objects).
    frames = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or a pid we cannot check): assume alive
    return True


def _is_stale_temp(path: Path, now: float) -> bool:
    """A temporary file whose writer is dead: its pid on this host is gone, or it is a day old."""
    try:
        age = now - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > STALE_TEMP_S:
        return True
    parts = path.name[1 : -len(".tmp")].split("~")
    if len(parts) == 4 and parts[1] == _host() and parts[2].isdigit():
        return not _pid_alive(int(parts[2]))
    return False


def batch_key(run_ids) -> str:
    """The name of a batch's files: sha256 of its sorted run ids, 16 hex digits."""
    text = "\n".join(sorted(map(str, run_ids)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class SweepData:
    """The DataFrames of a sweep folder, as returned by :func:`load`."""

    runs: pd.DataFrame
    trajectories: pd.DataFrame
    baselines: pd.DataFrame
    manifest: dict[str, Any]


@dataclass
class _Snapshot:
    """Merged runs and trajectories, and the batch keys that went into them."""

    runs: pd.DataFrame
    trajectories: pd.DataFrame
    keys: list[str]


class SweepStore:
    """Reads and writes one sweep folder (module docstring).

    Safe for any number of concurrent writers of batches (:meth:`write_batch`), on one host or
    several sharing the folder; the manifest, the baselines and :meth:`consolidate` belong to the
    coordinating process.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    # --- set-up ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the folder if needed and check it can be written; raise TrajlabError if not.

        Also deletes the temporary files of writers that died mid-write (see
        :meth:`remove_stale_temp_files`), never those of live ones.
        """
        try:
            if self.folder.exists() and not self.folder.is_dir():
                raise OSError("exists and is not a directory")
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.folder, prefix=_temp_prefix("write-probe"), suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
            self.remove_stale_temp_files()
        except OSError as error:
            reason = error.strerror or str(error)
            raise TrajlabError(f"--out: cannot write to folder {str(self.folder)!r} ({reason})") from None

    def remove_stale_temp_files(self) -> list[Path]:
        """Delete temporary files left by dead writers (module docstring); return what was deleted."""
        now = time.time()
        removed = []
        for folder in (self.folder, self.folder / RUNS_DIR, self.folder / TRAJECTORIES_DIR):
            for path in folder.glob(".*.tmp"):
                if _is_stale_temp(path, now):
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    @staticmethod
    def can_write(folder: str | os.PathLike) -> str | None:
        """Why ``folder`` could not be a sweep folder, or None; creates nothing."""
        path = Path(folder).absolute()
        if path.exists():
            if not path.is_dir():
                return "exists and is not a directory"
            return None if os.access(path, os.W_OK | os.X_OK) else "permission denied"
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            return f"{parent} is not a directory"
        return None if os.access(parent, os.W_OK | os.X_OK) else f"permission denied in {parent}"

    def check_readable(self) -> None:
        """Raise TrajlabError naming the first file of the folder that cannot be read.

        Every file is read and checked as the readers check it (module docstring: manifest shape,
        page checksums, content hash, columns and their types), so that a sweep stops before it
        writes anything, not after it has computed.
        """
        self.read_manifest()
        files = [(self.folder / RUNS, "runs"), (self.folder / TRAJECTORIES, "trajectories")]
        files.append((self.folder / BASELINES, "baselines"))
        files += [(path, "runs") for path in self._batch_files(RUNS_DIR)]
        files += [(path, "trajectories") for path in self._batch_files(TRAJECTORIES_DIR)]
        for path, kind in files:
            _read_frame(path, kind)

    # --- manifest and baselines (coordinator only) ----------------------------------------------

    def read_manifest(self) -> dict[str, Any]:
        """The manifest ({} if there is none), checked (module docstring); TrajlabError naming it if
        it cannot be read or has the wrong shape."""
        path = self.folder / MANIFEST
        if not _regular_file(path, "manifest"):
            return {}
        try:
            manifest = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise TrajlabError(f"{_shown(path)}: cannot read the manifest ({error.strerror or error})") from None
        except (ValueError, RecursionError) as error:  # bad JSON or UTF-8, absurd nesting or numbers
            manifest, problem = None, _reason(error)
        else:
            problem = _manifest_problem(manifest)
        if problem is not None:
            raise TrajlabError(f"{_shown(path)}: not a valid manifest ({problem}); move it aside to rerun")
        return manifest

    def update_manifest(self, configs: dict[str, dict], **info: Any) -> None:
        """Merge ``configs`` ({run_id: flat config}) and ``info`` into the manifest.

        Under the folder lock, so that two sweeps started into one folder both keep their configs.
        """
        with self._exclusive():
            manifest = self.read_manifest()
            manifest.setdefault("configs", {}).update(configs)
            for key, value in info.items():
                if isinstance(value, list) and isinstance(manifest.get(key), list):
                    manifest[key] = list(dict.fromkeys(manifest[key] + value))
                else:
                    manifest[key] = value
            text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
            atomic_write_bytes(self.folder / MANIFEST, text.encode())

    def read_baselines(self) -> pd.DataFrame:
        frame = _read_frame(self.folder / BASELINES, "baselines")
        return pd.DataFrame() if frame is None else frame

    def completed_baseline_ids(self) -> set[str]:
        baselines = self.read_baselines()
        return set(baselines["baseline_id"]) if "baseline_id" in baselines else set()

    def append_baselines(self, rows: pd.DataFrame) -> None:
        """Add baseline rows, replacing those with the same ``baseline_id`` (under the folder lock)."""
        with self._exclusive():
            old = self.read_baselines()
            if len(old):
                rows = pd.concat([old[~old["baseline_id"].isin(set(rows["baseline_id"]))], rows], ignore_index=True)
            _atomic_write_parquet(rows, self.folder / BASELINES)

    # --- runs and trajectories: reading ---------------------------------------------------------

    def _batch_files(self, subfolder: str) -> list[Path]:
        folder = self.folder / subfolder
        try:
            if not folder.is_dir():
                if os.path.lexists(folder):
                    raise TrajlabError(f"{_shown(folder)}: not a folder of batch files; move it aside")
                return []
            return sorted(folder.glob(BATCH_PATTERN))
        except OSError as error:
            raise TrajlabError(f"{_shown(folder)}: cannot list the batch files ({error.strerror or error})") from None

    def _snapshot(self, trajectories: bool = True) -> _Snapshot:
        """Merge the root files and every complete batch (module docstring: order and dedupe)."""
        # Batch files first, root files last: see "Consolidation writes ..." in the module docstring.
        batches = []  # (mtime_ns, key, runs frame)
        for path in self._batch_files(RUNS_DIR):
            try:
                mtime = path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            frame = _read_frame(path, "runs")
            if frame is not None:
                batches.append((mtime, path.name[len("batch-") : -len(".parquet")], frame))
        batches.sort(key=lambda item: (item[0], item[1]))
        keys = [key for _, key, _ in batches]
        # The root runs before the root trajectories: a run in the root runs file we read is then
        # in the root trajectories file we read after it, even if a consolidation ran in between.
        root_runs = _read_frame(self.folder / RUNS, "runs")
        traj_parts = []
        if trajectories:
            for rank, key in enumerate(keys):
                frame = _read_frame(self.folder / TRAJECTORIES_DIR / f"batch-{key}.parquet", "trajectories")
                if frame is not None:
                    traj_parts.append(frame.assign(_source=rank))
            root_traj = _read_frame(self.folder / TRAJECTORIES, "trajectories")
            if root_traj is not None:
                traj_parts.insert(0, root_traj.assign(_source=_ROOT))
        run_parts = [] if root_runs is None else [root_runs.assign(_source=_ROOT)]
        run_parts += [frame.assign(_source=rank) for rank, (_, _, frame) in enumerate(batches)]

        runs = _concat(run_parts)
        if "run_id" in runs:
            runs = runs.drop_duplicates("run_id", keep="last").reset_index(drop=True)
        traj = _concat(traj_parts)
        if len(traj) and "run_id" in runs:
            winner = traj["run_id"].map(runs.set_index("run_id")["_source"])
            exact = traj["_source"] == winner
            # The winner's batch trajectories may have just been consolidated into the root file.
            fallback = (traj["_source"] == _ROOT) & winner.notna() & ~traj["run_id"].isin(set(traj.loc[exact, "run_id"]))
            traj = traj[exact | fallback].reset_index(drop=True)
        elif len(traj):
            traj = traj.iloc[:0]
        runs = runs.drop(columns="_source", errors="ignore")
        traj = traj.drop(columns="_source", errors="ignore")
        return _Snapshot(runs, traj, keys)

    def read_runs(self) -> pd.DataFrame:
        """Every finished run, once (root file and batch files merged, deduped by run id)."""
        return self._snapshot(trajectories=False).runs

    def read_trajectories(self) -> pd.DataFrame:
        """The trajectory rows of every finished run (rows of unfinished runs are left out)."""
        return self._snapshot().trajectories

    def completed_run_ids(self) -> set[str]:
        """Run ids with a row in the root runs file or in a batch runs file.

        Each file is read whole and checked (module docstring): a damaged or foreign runs file is a
        TrajlabError naming it, never a set of runs taken as finished.
        """
        done: set[str] = set()
        for path in [*self._batch_files(RUNS_DIR), self.folder / RUNS]:
            frame = _read_frame(path, "runs")
            if frame is not None and "run_id" in frame:
                done.update(frame["run_id"])
        return done

    # --- runs and trajectories: writing ---------------------------------------------------------

    def write_batch(self, runs: pd.DataFrame, trajectories: pd.DataFrame) -> str:
        """Store one finished batch as its own pair of files; safe with concurrent writers.

        Trajectories first, then the runs file that marks the runs finished. Returns the batch key.
        """
        if "run_id" not in runs or not runs["run_id"].is_unique:
            raise ValueError("write_batch: runs needs a run_id column without duplicates")
        if not self.folder.is_dir():
            raise TrajlabError(
                f"{self.folder}: sweep folder does not exist on {socket.gethostname()}; workers must see the "
                "coordinator's sweep folder at the same path (a shared file system)"
            )
        key = batch_key(runs["run_id"])
        name = f"batch-{key}.parquet"
        traj_path = self.folder / TRAJECTORIES_DIR / name
        runs_path = self.folder / RUNS_DIR / name
        _atomic_write_parquet(trajectories, traj_path, create_parent=True)
        try:
            _atomic_write_parquet(runs, runs_path, create_parent=True)
        except BaseException:
            if not runs_path.exists():  # else an earlier copy of this batch still needs its trajectories
                traj_path.unlink(missing_ok=True)
            raise
        return key

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[bool]:
        """An exclusive lock on the folder, released by the kernel if we die.

        flock on the folder's own descriptor leaves no lock file behind. NFS cannot flock a
        directory: there a POSIX record lock on ``.consolidate.lock`` (what NFS locks) stands in.
        Yields False where neither works; callers then skip what needed the lock.
        """
        try:
            import fcntl
        except ImportError:  # not POSIX
            yield False
            return
        with contextlib.ExitStack() as stack:
            fd = os.open(self.folder, os.O_RDONLY)
            stack.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                stack.callback(fcntl.flock, fd, fcntl.LOCK_UN)
            except OSError:
                try:
                    lock = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
                except OSError:
                    yield False
                    return
                stack.callback(os.close, lock)
                try:
                    fcntl.lockf(lock, fcntl.LOCK_EX)
                except OSError:
                    yield False
                    return
                stack.callback(fcntl.lockf, lock, fcntl.LOCK_UN)
            yield True

    def consolidate(self, remove_empty_folders: bool = True) -> int:
        """Merge the batch files into the root files and delete them; return how many were merged.

        Coordinator only; concurrent consolidations (two sweeps into one folder) take turns on a
        lock. Where the file system cannot lock, nothing is merged: readers merge batch files
        themselves, so results are the same, only spread over more files.
        """
        if not (self.folder / RUNS_DIR).exists() and not (self.folder / TRAJECTORIES_DIR).exists():
            return 0
        with self._exclusive() as locked:
            if not locked:
                return 0
            snapshot = self._snapshot() if self._batch_files(RUNS_DIR) else None
            if snapshot is not None and snapshot.keys:
                _atomic_write_parquet(snapshot.trajectories, self.folder / TRAJECTORIES)
                _atomic_write_parquet(snapshot.runs, self.folder / RUNS)
                for key in snapshot.keys:
                    (self.folder / RUNS_DIR / f"batch-{key}.parquet").unlink(missing_ok=True)
                for key in snapshot.keys:
                    (self.folder / TRAJECTORIES_DIR / f"batch-{key}.parquet").unlink(missing_ok=True)
            self._remove_orphan_trajectories()
            if remove_empty_folders:
                for name in (RUNS_DIR, TRAJECTORIES_DIR):
                    with contextlib.suppress(OSError):  # not empty (a live writer), or absent
                        (self.folder / name).rmdir()
        return len(snapshot.keys) if snapshot is not None else 0

    def _remove_orphan_trajectories(self) -> None:
        now = time.time()
        for path in self._batch_files(TRAJECTORIES_DIR):
            if (self.folder / RUNS_DIR / path.name).exists():
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > ORPHAN_AGE_S:
                    path.unlink()

    def append_runs(self, runs: pd.DataFrame, trajectories: pd.DataFrame) -> None:
        """Add finished runs (one process): :meth:`write_batch` then :meth:`consolidate`.

        Runs already stored under the same run id are replaced, trajectories included.
        """
        self.write_batch(runs, trajectories)
        self.consolidate()


def load(folder: str | os.PathLike) -> SweepData:
    """The runs, trajectories, baselines and manifest of a sweep folder (root and batch files merged).

    Only finished runs are returned, each once, with the trajectory rows of the same write, so what
    is returned is always consistent, even while workers are writing.
    """
    store = SweepStore(folder)
    if not any(os.path.lexists(store.folder / name) for name in (MANIFEST, RUNS, RUNS_DIR)):
        raise TrajlabError(f"DIR: {str(store.folder)!r} is not a trajlab sweep folder (no {MANIFEST})")
    manifest = store.read_manifest()
    snapshot = store._snapshot()
    return SweepData(snapshot.runs, snapshot.trajectories, store.read_baselines(), manifest)

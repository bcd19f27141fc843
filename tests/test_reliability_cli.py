"""Reliability of the command line (issue 16, items 1, 8, 10 and the SLURM note): files trajlab
writes at a path the user names replace only regular files that may be written; a full disk or a
read-only folder while writing figures is one line; empty paths and malformed scheduler addresses
are one line; submitit's job folder is owner-only.

Every failing case ends in exit code 2 with one ``error:`` line on stderr, and nothing outside
``tmp_path`` is touched: an autouse guard refuses any rename or temporary file under /dev, and the
/dev/null case checks that it is still the same character device afterwards. Independent
references: the file system itself (os.lstat, mode bits, bytes and mtimes).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from trajlab import cli
from helpers import invoke

TINY = [
    "--set", "problem.m=8", "--set", "problem.n=6", "--set", "problem.rank=2",
    "--set", "problem.observations=30", "--set", "train.max_steps=300", "--set", "train.record_points=10",
    "--set", "model.scale=0.1", "--set", "optimizer.lr=0.01", "--set", "model.depth=1",
]
ROOT = os.geteuid() == 0


def error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict:
    """Every entry under ``folder`` (not following links): kind, mode, bytes of regular files,
    link targets, device numbers, mtimes."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            content = path.read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        else:
            content = st.st_rdev
        entries[str(path.relative_to(folder))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), content,
                                                  st.st_mtime_ns)
    return entries


@pytest.fixture(autouse=True)
def nothing_under_dev(monkeypatch):
    """Refuse (AssertionError) any rename onto, or temporary file in, /dev: even a regression of the
    checks cannot replace /dev/null here."""

    def outside_dev(path) -> None:
        if path is None:
            return
        resolved = os.path.realpath(os.fspath(path))
        assert resolved != "/dev" and not resolved.startswith("/dev/"), f"trajlab tried to write {resolved}"

    real_replace, real_rename, real_mkstemp = os.replace, os.rename, tempfile.mkstemp

    def replace(src, dst, *args, **kwargs):
        outside_dev(dst)
        return real_replace(src, dst, *args, **kwargs)

    def rename(src, dst, *args, **kwargs):
        outside_dev(dst)
        return real_rename(src, dst, *args, **kwargs)

    def mkstemp(*args, **kwargs):
        outside_dev(kwargs.get("dir", args[2] if len(args) > 2 else None))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One tiny finished sweep (one run), made once; tests copy it."""
    out = tmp_path_factory.mktemp("reliability") / "sweep"
    result = invoke("run", "dmf-completion", *TINY, "--no-figures", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    return out


@pytest.fixture
def copy(sweep, tmp_path):
    target = tmp_path / "sweep"
    shutil.copytree(sweep, target)
    return target


def _restore_modes(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


# --- item 1: report --output and every file written at a path the user names -------------------------


def _char_device(path: Path) -> Path:
    """A character device node like /dev/null, made inside tmp_path (root with CAP_MKNOD only)."""
    if not ROOT:
        pytest.skip("making a device node needs root")
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError) as error:
        pytest.skip(f"cannot make a device node here ({error})")
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    (path / "inside.txt").write_text("keep me")
    return path


def _link_to_a_file(path: Path) -> Path:
    target = path.parent / "somebody-elses.txt"
    target.write_text("somebody else's file")
    path.symlink_to(target)
    return path


def _dangling_link(path: Path) -> Path:
    path.symlink_to(path.parent / "not-there-yet.html")
    return path


def _link_to_a_folder(path: Path) -> Path:
    target = path.parent / "elsewhere"
    target.mkdir()
    path.symlink_to(target)
    return path


def _read_only_file(path: Path) -> Path:
    path.write_text("a read-only page")
    path.chmod(0o444)
    return path


def _in_a_read_only_folder(path: Path) -> Path:
    folder = path.parent / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "page.html"


def _under_a_regular_file(path: Path) -> Path:
    path.write_text("a regular file")
    return path / "sub" / "page.html"


TARGETS = {
    "character device": (_char_device, "character device"),
    "fifo": (_fifo, "FIFO"),
    "folder": (_folder, "folder"),
    "symlink to a regular file": (_link_to_a_file, "symbolic link"),
    "dangling symlink": (_dangling_link, "symbolic link"),
    "symlink to a folder": (_link_to_a_folder, "symbolic link"),
    "read-only file": (_read_only_file, "read-only"),
    "read-only folder": (_in_a_read_only_folder, "read-only"),
    "under a regular file": (_under_a_regular_file, "not a folder"),
}


@pytest.mark.parametrize("kind", list(TARGETS))
def test_report_output_refuses_what_is_not_a_writable_regular_file(kind, copy, tmp_path):
    make, words = TARGETS[kind]
    place = tmp_path / "place"
    place.mkdir()
    target = make(place / "target")
    before, sweep_before = snapshot(place), snapshot(copy)
    try:
        result = invoke("report", copy, "--output", target)
        after = snapshot(place)
    finally:
        _restore_modes(place)
    line = error_line(result)
    assert "--output" in line and str(target) in line and words in line, line
    assert after == before and snapshot(copy) == sweep_before


def test_report_output_dev_null_is_refused_and_stays_a_device(copy):
    before = os.stat("/dev/null")
    assert stat.S_ISCHR(before.st_mode)
    line = error_line(invoke("report", copy, "--output", "/dev/null"))
    assert "--output" in line and "/dev/null" in line and "character device" in line
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    assert not (copy / "report.html").exists()


def test_default_report_page_that_is_a_symlink_is_not_followed(copy, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("not trajlab's")
    (copy / "report.html").symlink_to(outside)
    line = error_line(invoke("report", copy))
    assert "symbolic link" in line and "report.html" in line
    assert outside.read_text() == "not trajlab's" and (copy / "report.html").is_symlink()


def test_report_replaces_a_writable_regular_file_and_follows_linked_folders(copy, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("old page")
    result = invoke("report", copy, "--output", page)
    assert result.exit_code == 0, result.stderr
    assert page.read_text().startswith("<!DOCTYPE html>") and stat.S_ISREG(os.lstat(page).st_mode)
    real = tmp_path / "real-folder"
    real.mkdir()
    (tmp_path / "linked-folder").symlink_to(real)
    result = invoke("report", copy, "--output", tmp_path / "linked-folder" / "page.html")
    assert result.exit_code == 0, result.stderr
    assert (real / "page.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("make", [_fifo, _link_to_a_file, _read_only_file], ids=["fifo", "symlink", "read-only"])
@pytest.mark.parametrize("name", ["index.html", "not-norms/report.html", "not-norms/final_table.csv"])
def test_reproduce_refuses_its_pages_before_running_anything(make, name, tmp_path):
    root = tmp_path / "results"
    (root / "not-norms").mkdir(parents=True)
    make(root / name)
    before = snapshot(tmp_path)
    line = error_line(invoke("reproduce", "--quick", "--no-progress", "--out", root, "not-norms"))
    assert "--out" in line and str(root / name) in line
    assert snapshot(tmp_path) == before  # nothing ran: no sweep files, no page


# --- item 8: figures on a full disk, into a read-only folder ------------------------------------------


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _leftover_temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_run_with_a_full_disk_while_drawing_figures(copy, monkeypatch):
    """The sweep is stored (a resumed run here: nothing to compute); writing its figures hits a full disk."""
    import matplotlib.figure

    runs = (copy / "runs.parquet").read_bytes()
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _no_space)
    line = error_line(invoke("run", "dmf-completion", *TINY, "--no-progress", "--out", copy))
    assert "No space left on device" in line and "saved" in line and "trajlab plot" in line, line
    assert (copy / "runs.parquet").read_bytes() == runs
    assert not _leftover_temporaries(copy)


def test_run_with_a_full_disk_while_writing_the_final_table(copy, monkeypatch):
    import trajlab.store.sweep_dir

    real = trajlab.store.sweep_dir.atomic_write_bytes

    def no_space_for_the_table(path, data):
        if Path(path).name == "final_table.csv":
            _no_space()
        return real(path, data)

    monkeypatch.setattr(trajlab.store.sweep_dir, "atomic_write_bytes", no_space_for_the_table)
    line = error_line(invoke("run", "dmf-completion", *TINY, "--no-progress", "--out", copy))
    assert "final_table.csv" in line and "No space left on device" in line and "saved" in line, line
    assert not (copy / "final_table.csv").exists() and not _leftover_temporaries(copy)


@pytest.mark.parametrize("failure", [errno.ENOSPC, errno.EACCES, errno.EROFS], ids=["ENOSPC", "EACCES", "EROFS"])
def test_plot_that_cannot_write_is_one_line(failure, copy, monkeypatch):
    import matplotlib.figure

    def fail(*args, **kwargs):
        raise OSError(failure, os.strerror(failure))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", fail)
    line = error_line(invoke("plot", copy))
    assert os.strerror(failure) in line and "DIR" in line and "unchanged" in line, line
    assert not _leftover_temporaries(copy)


@pytest.mark.parametrize("where", ["sweep folder", "figures folder"])
def test_plot_into_a_read_only_folder(where, copy):
    figures = copy / "figures"
    figures.mkdir()
    folder = copy if where == "sweep folder" else figures
    folder.chmod(0o555)
    before = snapshot(copy)
    try:
        result = invoke("plot", copy)
        after = snapshot(copy)
    finally:
        _restore_modes(copy)
    line = error_line(result)
    assert "DIR" in line and "read-only" in line and "nothing was written" in line, line
    assert after == before


def test_plot_does_not_replace_a_linked_figure(copy, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not trajlab's")
    (copy / "figures").mkdir()
    (copy / "figures" / "solution.png").symlink_to(outside)
    line = error_line(invoke("plot", copy))
    assert "solution.png" in line and "symbolic link" in line, line
    assert outside.read_bytes() == b"not trajlab's" and (copy / "figures" / "solution.png").is_symlink()
    assert not _leftover_temporaries(copy)


@pytest.mark.parametrize("make", [_link_to_a_file, _fifo, _folder, _read_only_file],
                         ids=["symlink", "fifo", "folder", "read-only"])
def test_save_figure_itself_replaces_only_writable_regular_files(make, tmp_path):
    """trajlab.plots.save_figure (also used by trajlab.run from Python) applies the same rule."""
    from matplotlib.figure import Figure

    from trajlab.plots import save_figure

    folder = tmp_path / "figures"
    folder.mkdir()
    make(folder / "f.svg")
    before = snapshot(tmp_path)
    figure = Figure()
    figure.add_subplot().plot([1, 2], [3, 4])
    with pytest.raises(FileExistsError, match="f.svg"):
        save_figure(figure, folder, "f")
    assert snapshot(tmp_path) == before  # not even the PNG: every target is checked first


def test_run_refuses_an_unwritable_figures_folder_before_computing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "figures").write_text("a file where the figures folder goes")
    before = snapshot(tmp_path)
    line = error_line(invoke("run", "dmf-completion", *TINY, "--no-progress", "--out", out))
    assert "--out" in line and "figures" in line and "not a folder" in line, line
    assert snapshot(tmp_path) == before


# --- item 10: empty paths, malformed scheduler addresses ---------------------------------------------


@pytest.mark.parametrize(
    "args, option",
    [
        (["run", "dmf-completion", *TINY, "--no-progress", "--out", ""], "--out"),
        (["run", "dmf-completion", *TINY, "--no-progress", "--out", "  "], "--out"),
        (["reproduce", "--quick", "--no-progress", "--out", "", "not-norms"], "--out"),
        (["report", "SWEEP", "--output", ""], "--output"),
    ],
    ids=["run", "run blank", "reproduce", "report"],
)
def test_empty_path_is_an_error_not_the_current_folder(args, option, copy, tmp_path, monkeypatch):
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    before = snapshot(copy)
    line = error_line(invoke(*[str(copy) if a == "SWEEP" else a for a in args]))
    assert f"{option}: empty path" in line, line
    assert list(here.iterdir()) == [] and snapshot(copy) == before


BAD_SCHEDULERS = ["not a url", "localhost", "tcp://localhost", "tcp://:8786", "tcp://host:0", "tcp://host:http",
                  "http://host:8786", "tcp://", "::1:8786", "[::1]", "tcp://host:8786/path", "tcp://a b:1"]


@pytest.mark.parametrize("address", BAD_SCHEDULERS)
def test_malformed_scheduler_is_one_line_before_anything_starts(address, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    import distributed

    def never(*args, **kwargs):
        raise AssertionError("a Dask client was started")

    monkeypatch.setattr(distributed, "Client", never)
    out = tmp_path / "out"
    line = error_line(invoke("run", "dmf-completion", *TINY, "--executor", "dask", "--scheduler", address,
                             "--no-progress", "--out", out))
    assert "--scheduler" in line and repr(address) in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    "address",
    ["tcp://10.0.0.1:8786", "10.0.0.1:8786", "scheduler-host.cluster:8786", "tls://host:8786", "ws://host:8786",
     "wss://host:443", "ucx://host:13337", "[::1]:8786", "tcp://[fe80::1%eth0]:8786", "inproc://10.0.0.1/1234/1"],
)
def test_well_formed_scheduler_addresses_are_accepted_without_connecting(address):
    pytest.importorskip("distributed")
    from trajlab.executors import make_executor

    executor = make_executor("dask", scheduler=address)
    assert executor.scheduler == address and executor.client is None


# --- SLURM: the job folder holds pickles the jobs run ---------------------------------------------------


def test_slurm_job_folder_is_owner_only(tmp_path):
    pytest.importorskip("submitit")
    from trajlab.executors import SlurmExecutor

    executor = SlurmExecutor(cluster="local")
    executor.submitit_executor(tmp_path / "sweep")
    assert stat.S_IMODE(os.stat(tmp_path / "sweep" / "slurm").st_mode) == 0o700

    wide = tmp_path / "wide"
    wide.mkdir()
    wide.chmod(0o777)
    SlurmExecutor(cluster="local", log_folder=wide).submitit_executor(tmp_path / "unused")
    assert stat.S_IMODE(os.stat(wide).st_mode) == 0o700


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_slurm_job_folder_that_is_not_a_folder_of_ours_is_refused(kind, tmp_path):
    pytest.importorskip("submitit")
    from trajlab.errors import ConfigError
    from trajlab.executors import SlurmExecutor

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if kind == "symlink":
        (sweep / "slurm").symlink_to(elsewhere)
    else:
        (sweep / "slurm").write_text("not a folder")
    with pytest.raises(ConfigError, match="slurm") as error:
        SlurmExecutor(cluster="local").submitit_executor(sweep)
    assert "\n" not in str(error.value)
    assert list(elsewhere.iterdir()) == []


def test_slurm_risk_is_documented_where_it_is_chosen():
    import typer.main

    from trajlab.executors import SlurmExecutor

    command = typer.main.get_command(cli.app).commands["run"]
    help_text = next(p.help for p in command.params if "--executor" in p.opts)
    assert "pickle" in help_text and "whoever can write the sweep folder can run code" in help_text
    assert "write the sweep folder can run code" in " ".join(SlurmExecutor.__doc__.split())

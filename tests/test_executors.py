"""Tests of the executors (in-process, several local devices, Dask, SLURM via submitit) and of
concurrent writers of one sweep folder.

Independent reference: the same sweep run in this process by the default executor, one batch
at a time on one device (the code path the rest of the suite checks against theory). Every other
executor must store the same runs, each exactly once, with the same statuses, steps and values.
The Dask test kills a worker process with SIGKILL in the middle of a batch, then resumes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trajlab.errors import ConfigError, TrajlabError
from trajlab.executors import InProcessExecutor, make_executor
from trajlab.presets import get_preset
from trajlab.store import SweepStore, load
from trajlab.sweep import run_sweep, split_axes

# Two static structures (depth 1 and 2), three seeds each: with max_batch=3, two batches.
# float64: the test process runs with jax_enable_x64 on (other test modules switch it on) and a
# worker process does not, which changes float32 results in the 7th digit; float64 runs agree.
TINY = {
    "train.x64": True,
    "problem.m": 8, "problem.n": 8, "problem.observations": 30, "train.max_steps": 50,
    "train.record_points": 5, "model.scale": 0.1, "optimizer.lr": 0.05,
    "metrics": ["train_loss", "test_error"],
    "model.depth": [1, 2], "seed": [0, 1, 2],
}
MAX_BATCH = 3
N_RUNS = 6


def tiny_configs(**overrides):
    fixed, axes = split_axes({**TINY, **overrides})
    return get_preset("dmf-completion").configs(fixed, axes)


def probe_metric(marker: str):
    """A user metric (always 0) that SIGKILLs its own process the first time any process traces it,
    unless ``marker`` exists. Metrics are traced after a batch started and before anything of it
    is written: a worker killed there dies mid-batch. O_EXCL makes exactly one process die."""

    def probe(state):
        import jax.numpy as jnp

        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return jnp.zeros(())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    return probe


def _sorted(frame: pd.DataFrame, keys) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)


def assert_same_sweep(data, reference) -> None:
    """Same run ids (each once), statuses and steps; same final metrics and trajectories."""
    runs, expected = data.runs, reference.runs
    assert runs["run_id"].is_unique and len(runs) == len(expected)
    assert set(runs["run_id"]) == set(expected["run_id"])
    columns = [c for c in expected.columns if c != "wall_s"]
    assert sorted(c for c in runs.columns if c != "wall_s") == sorted(columns)
    pd.testing.assert_frame_equal(
        _sorted(runs, ["run_id"])[columns], _sorted(expected, ["run_id"])[columns],
        check_exact=False, rtol=1e-6, atol=1e-9,
    )
    assert (_sorted(runs, ["run_id"])["status"] == _sorted(expected, ["run_id"])["status"]).all()
    traj, expected_traj = data.trajectories, reference.trajectories
    assert not traj.duplicated(["run_id", "step"]).any()
    pd.testing.assert_frame_equal(
        _sorted(traj, ["run_id", "step"]), _sorted(expected_traj, ["run_id", "step"])[traj.columns],
        check_exact=False, rtol=1e-6, atol=1e-9,
    )


def assert_single_file_layout(folder: Path) -> None:
    """After a sweep the coordinator has consolidated every batch file into the root files."""
    assert not (folder / "runs").exists() and not (folder / "trajectories").exists()
    assert (folder / "runs.parquet").is_file() and (folder / "trajectories.parquet").is_file()
    assert not [p for p in folder.rglob(".*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny sweep, in process, one batch at a time; with the probe metric (never firing)."""
    folder = tmp_path_factory.mktemp("reference")
    marker = folder / "never-kill"
    marker.touch()
    configs = tiny_configs()
    data = run_sweep(
        configs, folder / "sweep", max_batch=MAX_BATCH, show_progress=False,
        extra_metrics={"probe": probe_metric(str(marker))},
    )
    assert len(data.runs) == N_RUNS and set(data.runs["status"]) <= {"done", "max_steps"}
    assert (data.runs["final.probe"] == 0).all()
    return data


# --- Dask ---------------------------------------------------------------------------------------


def test_dask_cluster_with_a_killed_worker_then_resume_matches_in_process(tmp_path, reference):
    pytest.importorskip("distributed")
    import dask

    from trajlab.executors import DaskExecutor

    folder = tmp_path / "sweep"
    marker = tmp_path / "killed-once"
    metrics = {"probe": probe_metric(str(marker))}
    configs = tiny_configs()
    # No retry on another worker: the batch of the killed worker must fail, so that the sweep is
    # left half done and has to be resumed. One task per worker at a time: the other batch is
    # on the other worker, not queued behind the one that dies.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}):
        executor = DaskExecutor(n_workers=2)
        executor.start()
    try:
        assert len(executor.client.scheduler_info()["workers"]) == 2
        with pytest.raises(TrajlabError, match=r"1 of 2 batches \(3 runs\) failed") as failed:
            run_sweep(configs, folder, max_batch=MAX_BATCH, show_progress=False, extra_metrics=metrics,
                      executor=executor)
        assert marker.exists(), "no worker was killed"
        assert "KilledWorker" in str(failed.value) and "rerun" in str(failed.value)
        assert "\n" not in str(failed.value)

        # Half done: the batch of the surviving worker, whole; nothing of the killed one.
        partial = load(folder)
        assert len(partial.runs) == 3 and partial.runs["run_id"].is_unique
        assert partial.runs["model.depth"].nunique() == 1
        assert set(partial.trajectories["run_id"]) == set(partial.runs["run_id"])
        kept = partial.runs.copy()

        resumed = run_sweep(configs, folder, max_batch=MAX_BATCH, show_progress=False, extra_metrics=metrics,
                            executor=executor)
    finally:
        executor.shutdown()
    assert executor.client is None and executor.cluster is None

    assert_same_sweep(resumed, reference)
    # The runs stored before the resume were not run again.
    again = resumed.runs.set_index("run_id").loc[kept["run_id"]].reset_index()[kept.columns]
    pd.testing.assert_frame_equal(again, kept.reset_index(drop=True), check_exact=True)
    assert_single_file_layout(folder)
    assert load(folder).manifest["executor"] == "dask LocalCluster (2 worker processes)"


def test_dask_missing_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ConfigError) as error:
        make_executor("dask")
    message = str(error.value)
    assert "--executor dask" in message and "pip install 'trajlab[distributed]'" in message
    assert "\n" not in message


def test_importing_trajlab_needs_neither_dask_nor_submitit():
    code = textwrap.dedent(
        """
        import sys
        for name in ("dask", "distributed", "submitit"):
            sys.modules[name] = None  # any import of them fails
        import trajlab, trajlab.cli, trajlab.executors, trajlab.sweep
        executor = trajlab.executors.make_executor("inprocess")
        print(type(executor).__name__)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "InProcessExecutor"


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, options, words",
    [
        ("cluster", {}, ["--executor", "inprocess, processes, dask, slurm", "'cluster'"]),
        ("inprocess", {"scheduler": "tcp://h:8786"}, ["--scheduler", "dask only"]),
        ("inprocess", {"workers": 2}, ["--workers", "dask only"]),
        ("dask", {"slurm_time": 5}, ["--slurm-time", "slurm only"]),
        ("inprocess", {"slurm_gpus": 1}, ["--slurm-gpus", "slurm only"]),
        ("slurm", {"workers": 2}, ["--workers", "dask only"]),
    ],
)
def test_options_of_another_backend_are_one_line_errors(name, options, words):
    with pytest.raises(ConfigError) as error:
        make_executor(name, **options)
    for word in words:
        assert word in str(error.value)
    assert "\n" not in str(error.value)


def test_dask_option_values_are_checked_without_starting_anything():
    pytest.importorskip("distributed")
    with pytest.raises(ConfigError, match="--workers must be an integer >= 1, got 0"):
        make_executor("dask", workers=0)
    with pytest.raises(ConfigError, match="cannot be combined with --scheduler"):
        make_executor("dask", scheduler="tcp://127.0.0.1:1", workers=2)
    executor = make_executor("dask", scheduler="tcp://127.0.0.1:1")
    assert executor.client is None  # nothing started yet
    executor.connect_timeout_s = 1
    with pytest.raises(TrajlabError, match=r"--scheduler: cannot connect to 'tcp://127.0.0.1:1'"):
        executor.start()


# --- SLURM through submitit ---------------------------------------------------------------------


def test_slurm_options_reach_the_sbatch_script(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    import shutil

    from trajlab.executors import SlurmExecutor

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="no `sbatch` on PATH"):
        make_executor("slurm")
    # Pretend to be on a SLURM login node: submitit and trajlab look for sbatch / srun.
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    for options, words in (({"slurm_time": 0}, ["--slurm-time", ">= 1"]), ({"slurm_gpus": -1}, ["--slurm-gpus", ">= 0"]),
                           ({"slurm_partition": " "}, ["--slurm-partition"])):
        with pytest.raises(ConfigError) as error:
            make_executor("slurm", **options)
        assert all(word in str(error.value) for word in words)

    executor = make_executor("slurm", slurm_partition="gpu-long", slurm_time=90, slurm_gpus=2)
    assert isinstance(executor, SlurmExecutor) and executor.remote
    submitit_executor = executor.submitit_executor(tmp_path / "sweep")
    script = submitit_executor._executor._make_submission_file_text("python -m trajlab_job", "uid")
    for line in ("#SBATCH --partition=gpu-long", "#SBATCH --time=90", "#SBATCH --gpus-per-node=2",
                 "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1", "#SBATCH --job-name=trajlab"):
        assert line in script.splitlines(), line
    assert str(tmp_path / "sweep" / "slurm") in script  # logs next to the results
    assert executor.describe() == "slurm (partition=gpu-long, time=90min, gpus=2)"
    defaults = make_executor("slurm")
    assert (defaults.time_min, defaults.gpus, defaults.partition) == (60, 0, None)


def test_submitit_jobs_in_subprocesses_store_the_same_runs(tmp_path, reference):
    """submitit's LocalExecutor runs each batch as a job in its own process, as SLURM would."""
    pytest.importorskip("submitit")
    from trajlab.executors import SlurmExecutor

    marker = tmp_path / "never-kill"
    marker.touch()
    executor = SlurmExecutor(time_min=5, cluster="local", poll_s=0.2)
    configs = [c for c in tiny_configs() if c.model.depth == 1]  # one job: one process to start
    folder = tmp_path / "sweep"
    data = run_sweep(configs, folder, max_batch=MAX_BATCH, show_progress=False,
                     extra_metrics={"probe": probe_metric(str(marker))}, executor=executor)
    executor.shutdown()
    subset = reference.runs[reference.runs["model.depth"] == 1]
    expected = type(reference)(
        subset, reference.trajectories[reference.trajectories["run_id"].isin(subset["run_id"])],
        reference.baselines, reference.manifest,
    )
    assert_same_sweep(data, expected)
    logs = list((folder / "slurm").rglob("*_log.out"))
    assert logs, "the batch did not run as a submitit job"


# --- several local devices ----------------------------------------------------------------------

MULTI_DEVICE = textwrap.dedent(
    """
    import json, sys, threading
    import jax, jax.numpy as jnp
    import trajlab.engine.task as task_module
    from trajlab.executors import InProcessExecutor
    from trajlab.sweep import run_sweep, split_axes
    from trajlab.presets import get_preset

    settings = json.loads(sys.argv[2])
    fixed, axes = split_axes(settings)
    configs = get_preset("dmf-completion").configs(fixed, axes)
    seen = []
    original = task_module.run_batch

    def spy(*args, **kwargs):
        # Where a new array of this thread lands: the device jax.default_device selected.
        seen.append((threading.current_thread().name, str(jnp.zeros(()).devices().pop())))
        return original(*args, **kwargs)

    task_module.run_batch = spy
    devices = jax.local_devices()
    folder = sys.argv[1]
    several = run_sweep(configs, folder + "/several", max_batch=2, show_progress=False,
                        executor=InProcessExecutor(devices=devices))  # explicit: one thread per device
    used = list(seen)
    one = run_sweep(configs, folder + "/one", max_batch=2, show_progress=False,
                    executor=InProcessExecutor(devices=devices[:1]))
    print(json.dumps({"devices": [str(d) for d in devices], "used": used}))
    """
)


def test_several_local_devices_run_batches_side_by_side_with_equal_results(tmp_path):
    """Two CPU devices (XLA's forced host device count), given explicitly, stand for two GPUs of one
    host (by default CPU devices shard each batch instead: tests/test_multi_device.py)."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    # One static structure in two batches of two: one compilation per device.
    settings = {**TINY, "model.depth": 2, "seed": [0, 1, 2, 3]}
    result = subprocess.run(
        [sys.executable, "-c", MULTI_DEVICE, str(tmp_path), json.dumps(settings)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(report["devices"]) == 2
    threads = {thread for thread, _ in report["used"]}
    devices = {device for _, device in report["used"]}
    assert len(report["used"]) == 2  # two batches
    assert devices == set(report["devices"]), "the two batches did not run on the two devices"
    assert len(threads) == 2 and all(t.startswith("trajlab-device") for t in threads)

    several, one = load(tmp_path / "several"), load(tmp_path / "one")
    assert len(one.runs) == 4
    assert_same_sweep(several, one)
    assert "2 devices" in several.manifest["executor"] and one.manifest["executor"] == "inprocess"


def test_in_process_executor_propagates_errors_at_once(tmp_path, monkeypatch):
    """In process, the first failing batch stops the sweep with its own exception and traceback.
    (Compiling the next batch ahead, in a thread, would trace the metric too: off here.)"""
    monkeypatch.setattr("trajlab.sweep.runner.COMPILE_AHEAD", False)
    calls = []

    def broken(state):
        calls.append(1)
        raise RuntimeError("metric exploded")

    with pytest.raises(RuntimeError, match="metric exploded"):
        run_sweep(tiny_configs(), tmp_path / "sweep", max_batch=MAX_BATCH, show_progress=False,
                  extra_metrics={"broken": broken})
    assert len(calls) == 1  # the second batch was never started
    assert len(load(tmp_path / "sweep").runs) == 0


def test_in_process_executor_rejects_an_empty_device_list():
    with pytest.raises(ValueError, match="devices is empty"):
        InProcessExecutor(devices=[])


# --- concurrent writers of one folder -----------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np, pandas as pd
    from trajlab.store import SweepStore

    folder, name, batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = SweepStore(folder)

    def batch(ids, value):
        runs = pd.DataFrame({"run_id": ids, "status": "done", "steps": 10, "final.loss": value})
        traj = pd.DataFrame([(i, s, value / (1 + s)) for i in ids for s in (0, 5, 10)],
                            columns=["run_id", "step", "loss"])
        return runs, traj

    for b in range(batches):
        store.write_batch(*batch([f"{name}-{b}-{k}" for k in range(3)], float(b)))
        # Both writers also compute the same shared runs, as two sweeps over one grid would.
        if b % 4 == 0:
            store.write_batch(*batch([f"shared-{b}-{k}" for k in range(2)], float(b)))
        if b % 5 == 4:
            store.consolidate(remove_empty_folders=True)  # as a coordinator does, with the other writing
    """
)


def test_two_processes_writing_batches_concurrently_store_every_run_exactly_once(tmp_path):
    folder = tmp_path / "sweep"
    store = SweepStore(folder)
    store.prepare()
    store.update_manifest({})
    batches = 30
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(folder), name, str(batches)], stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]
    snapshots = 0
    while any(w.poll() is None for w in writers):
        # A reader concurrent with writers and consolidations always sees complete runs, once each.
        data = load(folder)
        if len(data.runs):
            snapshots += 1
            assert data.runs["run_id"].is_unique
            counts = data.trajectories.groupby("run_id").size()
            assert set(counts.index) == set(data.runs["run_id"])
            assert (counts == 3).all()
        time.sleep(0.01)  # leave the writers some CPU on a 2-core machine
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read().decode()
    assert snapshots > 0

    expected = {f"{w}-{b}-{k}" for w in "ab" for b in range(batches) for k in range(3)}
    expected |= {f"shared-{b}-{k}" for b in range(0, batches, 4) for k in range(2)}
    before_consolidation = load(folder)  # the writers' last batches may not be consolidated yet
    store.consolidate()
    for data in (before_consolidation, load(folder)):
        assert data.runs["run_id"].is_unique
        assert set(data.runs["run_id"]) == expected
        value = data.runs.set_index("run_id")["final.loss"]
        assert all(value[i] == float(i.split("-")[1]) for i in expected)
        traj = data.trajectories
        assert len(traj) == 3 * len(expected) and not traj.duplicated(["run_id", "step"]).any()
        np.testing.assert_allclose(traj["loss"], traj["run_id"].map(value) / (1 + traj["step"]))
    assert_single_file_layout(folder)
    assert sorted(pd.read_parquet(folder / "runs.parquet")["run_id"]) == sorted(expected)


# --- local worker processes (issue 15) -----------------------------------------------------------


def test_worker_processes_survive_a_killed_worker_and_match_in_process(tmp_path, reference):
    """Two spawned worker processes; one dies (SIGKILL) in its first batch: the batches in flight
    in the broken pool run again in a fresh one, and the sweep equals the in-process one."""
    from trajlab.executors import ProcessExecutor

    folder = tmp_path / "sweep"
    marker = tmp_path / "killed-once"
    metrics = {"probe": probe_metric(str(marker))}
    executor = ProcessExecutor(workers=2)
    assert executor.parts_per_group is None  # balanced over the two workers: both get a batch
    assert len(executor.plan([tiny_configs()[:3], tiny_configs()[3:]])) >= 2
    try:
        data = run_sweep(tiny_configs(), folder, show_progress=False, extra_metrics=metrics, executor=executor)
    finally:
        executor.shutdown()
    assert marker.exists(), "no worker was killed"
    assert_same_sweep(data, reference)
    assert_single_file_layout(folder)
    assert load(folder).manifest["executor"] == "processes (2 local worker processes)"


def test_a_batch_that_kills_its_worker_twice_fails_with_one_line_and_the_sweep_resumes(tmp_path, reference):
    from trajlab.executors import ProcessExecutor

    folder = tmp_path / "sweep"
    metrics = {"probe": probe_metric(str(tmp_path / "killed-once"))}
    executor = ProcessExecutor(workers=1, retries=0)
    try:
        with pytest.raises(TrajlabError, match=r"of \d+ batches \(\d+ runs?\) failed") as failed:
            run_sweep(tiny_configs(), folder, show_progress=False, extra_metrics=metrics, executor=executor)
        assert "\n" not in str(failed.value)
    finally:
        executor.shutdown()
    resumed = run_sweep(tiny_configs(), folder, show_progress=False, extra_metrics=metrics,
                        executor=ProcessExecutor(workers=2))
    assert_same_sweep(resumed, reference)


def test_processes_executor_from_the_command_line_options():
    from trajlab.executors import ProcessExecutor

    executor = make_executor("processes", workers=3)
    assert isinstance(executor, ProcessExecutor) and executor.workers == 3
    with pytest.raises(ConfigError, match="--workers must be an integer >= 1, got 0"):
        make_executor("processes", workers=0)

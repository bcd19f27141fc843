"""A rich progress bar for sweeps: runs finished, current step, range of the current losses."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class SweepProgress:
    """Context manager; all methods are no-ops when ``enabled`` is False."""

    def __init__(self, total: int, finished: int = 0, enabled: bool = True):
        self.total, self.finished, self.enabled = total, finished, enabled
        self._batch_runs = 0
        self._progress: Progress | None = None

    def __enter__(self) -> "SweepProgress":
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]runs"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=Console(file=sys.stderr),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("runs", total=self.total, completed=self.finished, info="")
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start_batch(self, runs: int) -> None:
        self._batch_runs = runs
        self._update(completed=self.finished, info=f"batch of {runs}: compiling")

    def batch_update(self, info: dict) -> None:
        text = (
            f"batch {info['finished']}/{info['runs']} stopped · step {info['step']:,} · "
            f"loss {info['loss_min']:.2e}..{info['loss_max']:.2e}"
        )
        self._update(completed=self.finished + info["finished"], info=text)

    def end_batch(self, runs: int) -> None:
        self.finished += runs
        self._update(completed=self.finished, info="")

    def message(self, text: str) -> None:
        self._update(info=text)

    def _update(self, **fields) -> None:
        if self._progress is not None:
            self._progress.update(self._task, **fields)

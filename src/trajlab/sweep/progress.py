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
        self._running: dict = {}  # batches running elsewhere (worker processes): their latest report
        self._note = ""

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

    def end_batch(self, runs: int, key=None) -> None:
        self.finished += runs
        self._running.pop(key, None)
        if not self._running:
            self._note = ""
        self._update(completed=self.finished + self._stopped_elsewhere(), info=self._summary())

    def batch_updater(self, key):
        """The progress callback of one of several batches running at once elsewhere (worker
        processes): the bar counts their stopped runs and shows their steps and losses together."""

        def update(info: dict) -> None:
            self._running[key] = info
            self._update(completed=self.finished + self._stopped_elsewhere(), info=self._summary())

        return update

    def _stopped_elsewhere(self) -> int:
        return sum(int(info.get("finished", 0)) for info in list(self._running.values()))

    def _summary(self) -> str:
        reports = list(self._running.values())
        if not reports:
            return self._note
        steps = ", ".join(f"{int(info['step']):,}" for info in reports)
        low = min(float(info["loss_min"]) for info in reports)
        high = max(float(info["loss_max"]) for info in reports)
        return f"{len(reports)} running · steps {steps} · loss {low:.2e}..{high:.2e}"

    def message(self, text: str) -> None:
        self._note = text
        self._update(info=self._summary())

    def _update(self, **fields) -> None:
        if self._progress is not None:
            self._progress.update(self._task, **fields)

"""The trajectory engine."""

from trajlab.engine.loop import BatchResult, CompiledTask, Task, run_batch
from trajlab.engine.schedule import linear_schedule, log_schedule, recording_steps
from trajlab.engine.task import build_task, check_family, compiled_task, run_configs

__all__ = [
    "BatchResult",
    "CompiledTask",
    "Task",
    "build_task",
    "check_family",
    "compiled_task",
    "linear_schedule",
    "log_schedule",
    "recording_steps",
    "run_batch",
    "run_configs",
]

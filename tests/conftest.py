"""Test-suite settings.

The command line's default executor is ``auto`` (worker processes on a multi-core CPU). The suite
runs its many small sweeps in process (``TRAJLAB_EXECUTOR=inprocess``), where a worker process
would cost more to start than the sweep takes; the worker-process path has its own tests
(tests/test_executors.py, tests/test_auto_executor.py), which set the executor explicitly.
"""

import os

os.environ.setdefault("TRAJLAB_EXECUTOR", "inprocess")

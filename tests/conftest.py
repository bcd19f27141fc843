"""Suite-wide settings.

The suite runs in pytest-xdist workers that already keep every core busy, so the command line's
default ``--executor auto`` (which would start worker processes on a multi-core CPU for every
multi-batch sweep) is pinned to this process for the tests that do not choose an executor; the
automatic choice itself is tested in tests/test_auto_executor.py with the variable removed.
"""

import os

os.environ.setdefault("TRAJLAB_EXECUTOR", "inprocess")

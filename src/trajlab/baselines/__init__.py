"""Non-trajectory references: convex programs and closed forms that trajectories are compared with.

The names below are loaded on first use: cvxpy (about 1.2 s to import) is paid only by the sweeps
that compute a convex baseline, not by ``trajlab list`` or ``trajlab config``.
"""

import importlib

_WHERE = {
    "lp_regression_minimum": "trajlab.baselines.lp_regression",
    "NuclearNormResult": "trajlab.baselines.nuclear_norm",
    "nuclear_norm_completion": "trajlab.baselines.nuclear_norm",
    "nuclear_norm_sensing": "trajlab.baselines.nuclear_norm",
}


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trajlab.baselines' has no attribute {name!r}")


__all__ = [
    "lp_regression_minimum",
    "NuclearNormResult",
    "nuclear_norm_completion",
    "nuclear_norm_sensing",
]

"""Named presets, one module per paper result."""

from trajlab.errors import ConfigError
from trajlab.experiments.dmf import DMF_COMPLETION, DMF_DYNAMICS, DMF_SENSING
from trajlab.experiments.edge_of_stability import EDGE_OF_STABILITY
from trajlab.experiments.gd_vs_gf import GD_VS_GF
from trajlab.experiments.linear_dynamics import ACCELERATION_LP, BALANCED_CONVERGENCE, SAXE_DYNAMICS
from trajlab.experiments.global_optimality import GLOBAL_OPTIMALITY
from trajlab.experiments.max_margin import MAX_MARGIN
from trajlab.experiments.not_norms import NOT_NORMS
from trajlab.experiments.overparam import OVERPARAM_LANDSCAPE
from trajlab.experiments.preset import Preset
from trajlab.experiments.tensor import HTF_INCREMENTAL, TC_INCREMENTAL

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        DMF_COMPLETION,
        DMF_SENSING,
        DMF_DYNAMICS,
        ACCELERATION_LP,
        BALANCED_CONVERGENCE,
        SAXE_DYNAMICS,
        NOT_NORMS,
        TC_INCREMENTAL,
        HTF_INCREMENTAL,
        MAX_MARGIN,
        OVERPARAM_LANDSCAPE,
        GLOBAL_OPTIMALITY,
        GD_VS_GF,
        EDGE_OF_STABILITY,
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ConfigError listing the known presets otherwise."""
    if name not in PRESETS:
        raise ConfigError(f"PRESET: unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


__all__ = ["PRESETS", "Preset", "get_preset"]

"""Preset ``not-norms``: "Implicit Regularization in Deep Learning May Not Be Explainable by Norms"
(Razin & Cohen, NeurIPS 2020).

Matrix completion of [[?, 1], [1, 0]] (the three known entries observed; problem dataset
``razin_cohen_2x2``), loss 1/2 sum of squared residuals, plain GD with lr 3e-3, stop at loss 1e-4.
Any exact fit has det = -1, but from det(W_e(0)) > 0 gradient flow on a deep factorization keeps
det(W_e) > 0, so the loss can only go to 0 with the unobserved entry, and with it every norm of
W_e, going to infinity, while the effective rank goes to 1: the implicit regularization is
towards low rank and no norm explains it.

Inits: per-layer Gaussian with std 8e-3 (``model.init=gaussian``) and a balanced init
(``balanced_random``, scale 1e-4), each conditioned on det(W_e(0)) > 0 (``model.condition``).

Measured on a 2-core CPU (float32, seeds 0-3; ``trajlab run not-norms``): at loss 1e-4 the
unobserved entry reaches 64-71 with effective rank 1.000 for depth 3 (Gaussian, 3.3-4.7 million
steps; balanced, 3.2 million to the 10 million cap), and 6.6-7.4 with effective rank 1.08-1.10 for
balanced depth 2 (25-32 thousand steps). Gaussian depth 2 is the exception: det(W_2) crosses zero
within ~150 steps (the layers are not balanced and as small as their imbalance), det(W_e) turns
negative and GD fits the entries with a small unobserved entry (0.2-1.9) and effective rank
1.5-2.0. The theorem's premise (det(W_e) > 0 along the flow) is what fails there, not its
conclusion; it is kept in the sweep because it shows that premise at work.
The whole preset runs in well under a minute: about a microsecond per step for a batch of 4
2 x 2 runs, which is the test of the engine's per-step overhead.
"""

from __future__ import annotations

from trajlab.config import ModelConfig, OptimizerConfig, ProblemConfig, RunConfig, TrainConfig
from trajlab.experiments.preset import Preset

METRICS = (
    "train_loss",
    "unobserved_max_abs",
    "frobenius_norm",
    "nuclear_norm",
    "schatten_quasi_norm",
    "effective_rank",
    "singular_values",
)


def not_norms_figures(data) -> dict:
    from trajlab.plots.not_norms import norms_against_loss_figure

    return {"norms_against_loss": norms_against_loss_figure(data.runs, data.trajectories)}


NOT_NORMS = Preset(
    name="not-norms",
    description="2x2 completion [[?,1],[1,0]]: GD drives every norm up and rank down (Razin & Cohen 2020)",
    base=RunConfig(
        problem=ProblemConfig(
            kind="completion", dataset="razin_cohen_2x2", m=2, n=2, rank=1, observations=3, loss_convention="half_sum"
        ),
        model=ModelConfig(depth=3, init="gaussian", scale=8e-3, condition="positive_det"),
        optimizer=OptimizerConfig(name="gd", lr=3e-3),
        train=TrainConfig(max_steps=10_000_000, tol=1e-4, record_points=400, top_k=2),
        metrics=METRICS,
    ),
    axes={"model.depth": [2, 3], "seed": [0, 1, 2, 3]},
    variants=(
        {"model.init": "gaussian", "model.scale": 8e-3},
        {"model.init": "balanced_random", "model.scale": 1e-4},
    ),
    quick={"seed": [0, 1], "train.max_steps": 3_000_000, "train.record_points": 300},
    figures=not_norms_figures,
    claims=(
        "from det(W_e(0)) > 0, as the loss falls the unobserved entry and all norms grow while the effective rank tends to 1",
    ),
)

"""trajlab: a laboratory for the trajectories of gradient descent."""

__version__ = "0.1.0"

"""Deep model: the L1-penalized network, streaming packed genotypes to the device, training
over seeds and a hyperparameter grid, model selection and checkpoints."""

from .network import GenotypeMLP

__all__ = ["GenotypeMLP"]

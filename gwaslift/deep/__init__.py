"""Deep model: the L1-penalized network, streaming packed genotypes to the device, training
over seeds and a hyperparameter grid, model selection and checkpoints.

Public: :func:`train` (grid x seeds; ``refit_seeds=`` also selects and refits),
:func:`select`, :func:`refit`, :func:`train_select_refit`, :func:`load_fit`, the result
types :class:`DeepFit`, :class:`Member`, :class:`Split` (:func:`make_split`; :func:`make_folds` and
:func:`fold_split` for cross-fitted refits), and the data
path :func:`decode_packed_torch`, :func:`iter_fit_batches`.
"""

from .data import decode_packed_torch, iter_fit_batches
from .fit import DeepFit, Member, Split, fold_split, load_fit, make_folds, make_split
from .network import GenotypeMLP
from .train import refit, select, train, train_select_refit

__all__ = ["DeepFit", "GenotypeMLP", "Member", "Split", "decode_packed_torch", "fold_split", "iter_fit_batches",
           "load_fit", "make_folds", "make_split", "refit", "select", "train", "train_select_refit"]

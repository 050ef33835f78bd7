"""The network of the paper (Sec. 2, Step 1): SNPs -> h1 -> ReLU -> h2 -> ReLU -> 1.

Inputs are *centred* A1 dosages: ``x = dosage - 2 * p_train`` with missing genotypes set
to 0 (= imputed to the training mean), so the mean-genotype DeepLIFT reference is the zero
vector. Optional covariates (PCs, age, sex, ...) enter the first hidden layer through
their own, unpenalized weight matrix, standardized by training mean and scale.

Each nonlinearity is its own ``nn.ReLU`` module: DeepLIFT implementations (ours and
Captum's) attach their rules to the module, never to a functional call.
"""

from __future__ import annotations

import torch
from torch import nn


class GenotypeMLP(nn.Module):
    """Feedforward network on centred dosages.

    Parameters
    ----------
    n_snps : int
        Number of SNP inputs (first-layer columns, L1-penalized).
    hidden : (int, int)
        Widths ``(h1, h2)`` of the two hidden layers.
    n_covar : int
        Number of covariate inputs (unpenalized, no bias of their own); 0 for none.

    ``forward(x, covar=None)`` takes ``x`` (batch, n_snps) float and ``covar``
    (batch, n_covar) and returns (batch, 1): the logit for a binary trait, the predicted
    (standardized) value for a quantitative one.
    """

    def __init__(self, n_snps: int, hidden: tuple[int, int] = (64, 256), n_covar: int = 0):
        super().__init__()
        h1, h2 = (int(h) for h in hidden)
        self.n_snps = int(n_snps)
        self.n_covar = int(n_covar)
        self.hidden = (h1, h2)
        self.snp_linear = nn.Linear(self.n_snps, h1)
        self.covar_linear = nn.Linear(self.n_covar, h1, bias=False) if self.n_covar else None
        self.relu1 = nn.ReLU()
        self.hidden_linear = nn.Linear(h1, h2)
        self.relu2 = nn.ReLU()
        self.out_linear = nn.Linear(h2, 1)

    def first_layer(self, x: torch.Tensor, covar: torch.Tensor | None = None) -> torch.Tensor:
        """Pre-activation of the first hidden layer, (batch, h1)."""
        z = self.snp_linear(x)
        if self.covar_linear is not None:
            if covar is None:
                raise ValueError("this network was built with covariates: pass covar")
            z = z + self.covar_linear(covar)
        return z

    def forward(self, x: torch.Tensor, covar: torch.Tensor | None = None) -> torch.Tensor:
        h = self.relu1(self.first_layer(x, covar))
        h = self.relu2(self.hidden_linear(h))
        return self.out_linear(h)

"""Kernel maths of centered kernel alignment (CKA): Gram matrices, the two HSIC estimators, full-data CKA.

CKA (Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019) is
``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` for Gram matrices ``K``, ``L`` of two representations of
the same ``n`` examples (rows = examples). Two estimators of HSIC:

* biased (plug-in): ``tr(K H L H) / (n - 1)^2`` with ``H = I - 11^T / n``;
* debiased: the unbiased HSIC of Song et al. (JMLR 2012), needs ``n >= 4``. The plug-in estimator is biased
  upwards when ``n`` is not much larger than the feature dimension (two independent 64-d Gaussian samples of
  256 give CKA > 0.1); the debiased one is centred on the population value.

Kernels: ``linear`` (``K = X X^T``) and ``rbf`` (``exp(-d^2 / (2 sigma^2))``; by default
``sigma^2 = threshold^2 * median squared distance``, the median taken over the full distance matrix
including its zero diagonal, as in the authors' reference code).

:func:`cka` holds ``n x n`` matrices (memory ``O(n^2)``); :mod:`rtl_core.analysis.cka` streams the same
estimators over batches for layer-wise CKA of whole networks.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import numpy as np
import torch

from rtl_core.errors import ConfigError, DataError

Kernel = Literal["linear", "rbf"]
KERNELS: tuple[str, ...] = ("linear", "rbf")

ArrayLike = torch.Tensor | np.ndarray


def as_features(x: ArrayLike, name: str, device: torch.device | str | None = None) -> torch.Tensor:
    """``(n, ...)`` array -> ``(n, d)`` float64 tensor on ``device`` (default: where ``x`` lives)."""
    t = torch.as_tensor(x)
    if t.ndim < 2:
        raise DataError(f"{name} has shape {tuple(t.shape)}; CKA needs (n_examples, n_features).")
    t = t.flatten(1).to(device=device if device is not None else t.device, dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise DataError(f"{name} contains NaN or infinite values; check the activations / inputs.")
    return t


def check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ConfigError(f"kernel={kernel!r} is not known; use one of {KERNELS}.")


def check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[0] != y.shape[0]:
        raise DataError(f"x has {x.shape[0]} examples but y has {y.shape[0]}; CKA needs the same examples.")


def check_n(debiased: bool, n: int, what: str) -> None:
    """The estimator's minimum sample size: 2 (biased) or 4 (debiased)."""
    need = 4 if debiased else 2
    if n < need:
        est = "debiased (unbiased HSIC, Song et al. 2012)" if debiased else "biased"
        raise DataError(f"{what} has n={n} examples; the {est} CKA estimator needs n >= {need}.")


def cka_ratio(hxy: float, hxx: float, hyy: float) -> float:
    """``hxy / sqrt(hxx * hyy)``, NaN (with a warning) when a representation has no variance."""
    denom = hxx * hyy
    if not denom > 0.0 or not math.isfinite(denom):
        warnings.warn(
            "CKA is undefined: a representation has zero (or negative estimated) self-HSIC, e.g. constant "
            "features; returning NaN.",
            RuntimeWarning,
            stacklevel=3,
        )
        return float("nan")
    return float(hxy / math.sqrt(denom))


# ----------------------------------------------------------------------------- Gram matrices
def gram_linear(x: ArrayLike) -> torch.Tensor:
    """Linear kernel Gram matrix ``X X^T`` (float64)."""
    t = as_features(x, "x")
    return t @ t.T


def _median(values: torch.Tensor) -> torch.Tensor:
    """numpy-style median (mean of the two middle values when the count is even)."""
    flat = values.reshape(-1)
    m = flat.numel()
    if m % 2:
        return flat.kthvalue((m + 1) // 2).values
    return 0.5 * (flat.kthvalue(m // 2).values + flat.kthvalue(m // 2 + 1).values)


def gram_rbf(x: ArrayLike, sigma: float | None = None, threshold: float = 1.0) -> torch.Tensor:
    """RBF Gram matrix ``exp(-||x_i - x_j||^2 / (2 sigma^2))``.

    ``sigma=None`` uses the median heuristic of Kornblith et al.:
    ``sigma^2 = threshold^2 * median(squared distances)``.
    """
    t = as_features(x, "x")
    sq = (t * t).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (t @ t.T)).clamp_min_(0.0)
    if sigma is None:
        if threshold <= 0:
            raise ConfigError(f"threshold={threshold} must be > 0 (fraction of the median distance).")
        s2 = threshold**2 * _median(d2)
        if not s2 > 0:
            s2 = torch.ones((), dtype=d2.dtype, device=d2.device)  # all points equal: any bandwidth works
    else:
        if sigma <= 0:
            raise ConfigError(f"sigma={sigma} must be > 0.")
        s2 = torch.tensor(float(sigma) ** 2, dtype=d2.dtype, device=d2.device)
    return torch.exp(-d2 / (2.0 * s2))


def gram(x: ArrayLike, kernel: Kernel = "linear", sigma: float | None = None, threshold: float = 1.0) -> torch.Tensor:
    """Gram matrix of ``x`` (rows = examples) for ``kernel``."""
    check_kernel(kernel)
    return gram_linear(x) if kernel == "linear" else gram_rbf(x, sigma, threshold)


def center_gram(k: torch.Tensor) -> torch.Tensor:
    """``H K H`` with ``H = I - 11^T / n`` (double centring)."""
    k = k.to(torch.float64)
    row = k.mean(0, keepdim=True)
    return k - row - row.T + row.mean()


# ----------------------------------------------------------------------------- HSIC
class UnbiasedGram:
    """The parts of a Gram matrix that Song et al.'s unbiased HSIC needs: ``K~`` (zero diagonal),
    its row sums ``K~ 1`` and total ``1^T K~ 1``."""

    def __init__(self, k: torch.Tensor) -> None:
        self.n = k.shape[0]
        check_n(True, self.n, "The Gram matrix")
        self.k = k.to(torch.float64).clone()
        self.k.fill_diagonal_(0.0)
        self.rows = self.k.sum(1)
        self.total = self.rows.sum()

    def hsic(self, other: UnbiasedGram) -> torch.Tensor:
        """``[tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))``."""
        n = self.n
        tr = (self.k * other.k).sum()
        return (tr + self.total * other.total / ((n - 1) * (n - 2)) - 2.0 * (self.rows @ other.rows) / (n - 2)) / (
            n * (n - 3)
        )


def cka_from_grams(k: torch.Tensor, l: torch.Tensor, debiased: bool = False) -> float:
    """CKA from two ``n x n`` Gram matrices."""
    if k.shape != l.shape or k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise DataError(f"Gram matrices must be square and alike; got {tuple(k.shape)} and {tuple(l.shape)}.")
    if debiased:
        uk, ul = UnbiasedGram(k), UnbiasedGram(l)
        return cka_ratio(float(uk.hsic(ul)), float(uk.hsic(uk)), float(ul.hsic(ul)))
    check_n(False, k.shape[0], "The Gram matrix")
    kc, lc = center_gram(k), center_gram(l)
    return cka_ratio(float((kc * lc).sum()), float((kc * kc).sum()), float((lc * lc).sum()))


def cka(
    x: ArrayLike,
    y: ArrayLike,
    kernel: Kernel = "linear",
    debiased: bool = False,
    sigma: float | None = None,
    threshold: float = 1.0,
    device: torch.device | str | None = None,
) -> float:
    """Full-data CKA between ``x`` ``(n, ...)`` and ``y`` ``(n, ...)`` via ``n x n`` Gram matrices.

    Memory ``O(n^2)``; runs on ``device`` or where ``x`` lives.
    """
    check_kernel(kernel)
    tx = as_features(x, "x", device)
    ty = as_features(y, "y", tx.device)
    check_pair(tx, ty)
    check_n(debiased, tx.shape[0], "x")
    return cka_from_grams(gram(tx, kernel, sigma, threshold), gram(ty, kernel, sigma, threshold), debiased)

"""Transferability estimators: how well will an encoder transfer to a labelled task, from one forward pass?

Each takes frozen features of the task's training images (``(n, d)``) and their labels; none trains the encoder.

* :func:`logme`: LogME (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
  ICML 2021): the log marginal evidence of a Bayesian linear model ``y = F w + ε`` with prior
  ``w ~ N(0, α⁻¹ I)`` and noise ``ε ~ N(0, β⁻¹)``, maximised over α and β by the paper's fixed-point iteration
  (its Algorithm 1, on the SVD of F), per one-hot class target, divided by n and averaged over classes.
* :func:`knn_accuracy`: cross-validated kNN accuracy (k nearest by cosine similarity, majority vote), folds
  grouped by patient / scan so no patient's images are on both sides.
* :func:`probe_accuracy`: a few-shot linear probe: logistic regression on at most ``shots`` images per class of
  each training fold (z-scored features), accuracy on the held-out fold; the same grouped folds.
* :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to two feature sets (Heusel et al.
  2017, as in FID), divided by the sum of their covariance traces so encoders of different feature scales
  compare (0: same mean and covariance).

Example::

    score = logme(features, labels)                     # higher: expected to transfer better
    acc = knn_accuracy(features, labels, groups, k=20)
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold

from rtl_core.errors import DataError


def logme_target(
    features: np.ndarray, y: np.ndarray, max_iter: int = 100, tol: float = 1e-5
) -> tuple[float, float, float]:
    """LogME of one real-valued target ``y`` (n,): ``(evidence / n, alpha, beta)`` at the fixed point.

    With ``F = U diag(s) Vᵀ`` and σ = s², the evidence of (α, β) is
    ``n/2 log β + d/2 log α − n/2 log 2π − β/2 ‖F m − y‖² − α/2 ‖m‖² − 1/2 log|α I + β FᵀF|`` with
    ``m = β (α I + β FᵀF)⁻¹ Fᵀ y``; the iteration sets γ = Σ β σᵢ / (α + β σᵢ), α = γ / ‖m‖²,
    β = (n − γ) / ‖F m − y‖² until α/β settles (You et al. 2021, Algorithm 1).
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    uy = u.T @ y  # coordinates of y in F's column space (rank r = len(s))
    residual_outside = max(float(y @ y - uy @ uy), 0.0)  # ‖y‖² beyond F's column space
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        gamma = float(np.sum(beta * sigma / (alpha + beta * sigma)))
        # m in F's row space: m = V diag(β s / (α + β σ)) Uᵀ y, so ‖m‖² and ‖F m − y‖² need only uy
        m2 = float(np.sum((beta * s * uy / (alpha + beta * sigma)) ** 2))
        res2 = float(np.sum((alpha * uy / (alpha + beta * sigma)) ** 2)) + residual_outside
        new_alpha, new_beta = gamma / max(m2, 1e-12), (n - gamma) / max(res2, 1e-12)
        converged = abs(new_alpha / new_beta - alpha / beta) / (alpha / beta) < tol
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    m2 = float(np.sum((beta * s * uy / (alpha + beta * sigma)) ** 2))
    res2 = float(np.sum((alpha * uy / (alpha + beta * sigma)) ** 2)) + residual_outside
    # log|αI + βFᵀF| over d dimensions: the r non-zero σ, and α for the d − r others
    logdet = float(np.sum(np.log(alpha + beta * sigma))) + (d - len(sigma)) * np.log(alpha)
    evidence = (
        n / 2 * np.log(beta)
        + d / 2 * np.log(alpha)
        - n / 2 * np.log(2 * np.pi)
        - beta / 2 * res2
        - alpha / 2 * m2
        - logdet / 2
    )
    return float(evidence / n), float(alpha), float(beta)


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of a classification task: the mean over classes of :func:`logme_target` on one-hot targets."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise DataError(f"LogME needs at least two classes, got {classes.tolist()}.")
    return float(np.mean([logme_target(features, (labels == c).astype(np.float64))[0] for c in classes]))


def grouped_folds(
    labels: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs of a stratified K-fold grouped by ``groups`` (no group on both sides)."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise DataError(f"Grouped cross-validation needs at least 2 patient/scan groups, got {n_groups}.")
    largest_class = int(np.unique(labels, return_counts=True)[1].max())
    n_splits = min(folds, n_groups, largest_class)
    if n_splits < 2:
        raise DataError(f"Grouped cross-validation needs a class with at least 2 images, got {largest_class}.")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return [(tr, te) for tr, te in splitter.split(np.zeros(len(labels)), labels, groups)]


def _cosine_knn_predict(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    a = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    b = test / np.maximum(np.linalg.norm(test, axis=1, keepdims=True), 1e-12)
    k = min(k, len(a))
    nearest = np.argpartition(-(b @ a.T), k - 1, axis=1)[:, :k]
    votes = train_y[nearest]
    classes = np.unique(train_y)
    counts = (votes[..., None] == classes).sum(axis=1)
    return classes[np.argmax(counts, axis=1)]


def knn_accuracy(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int = 20, folds: int = 5, seed: int = 0
) -> float:
    """Out-of-fold accuracy of cosine kNN, folds grouped by patient (see the module doc)."""
    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    correct = np.zeros(len(labels), dtype=bool)
    for train, test in grouped_folds(labels, np.asarray(groups), folds, seed):
        correct[test] = _cosine_knn_predict(features[train], labels[train], features[test], k) == labels[test]
    return float(correct.mean())


def probe_accuracy(
    features: np.ndarray, labels: np.ndarray, groups: np.ndarray, shots: int = 10, folds: int = 5, seed: int = 0
) -> float:
    """Out-of-fold accuracy of a logistic-regression probe fitted on ``shots`` images per class of each fold."""
    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    rng = np.random.default_rng(seed)
    correct = np.zeros(len(labels), dtype=bool)
    for train, test in grouped_folds(labels, np.asarray(groups), folds, seed):
        chosen = np.concatenate([rng.permutation(train[labels[train] == c])[:shots] for c in np.unique(labels[train])])
        if len(np.unique(labels[chosen])) < 2:  # a fold whose training part holds one class: it can only predict it
            correct[test] = labels[test] == labels[chosen][0]
            continue
        mean, std = features[chosen].mean(0), features[chosen].std(0) + 1e-6
        probe = LogisticRegression(max_iter=500, C=1.0)
        probe.fit((features[chosen] - mean) / std, labels[chosen])
        correct[test] = probe.predict((features[test] - mean) / std) == labels[test]
    return float(correct.mean())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to feature sets ``a`` and ``b``, over ``tr Σa + tr Σb`` (module doc)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(Σa Σb) = Σ sqrt(eigenvalues of Σa^½ Σb Σa^½), a symmetric PSD matrix: stable where Σa is singular
    w, v = np.linalg.eigh(cov_a)
    half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    trace_root = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(half @ cov_b @ half), 0, None))))
    distance = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)
    scale = float(np.trace(cov_a) + np.trace(cov_b))
    return max(distance, 0.0) / scale if scale > 0 else float("nan")

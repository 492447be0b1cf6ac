"""Centered kernel alignment (CKA) between representations, layer by layer.

CKA (Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019) is
``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` for Gram matrices ``K``, ``L`` of two representations of
the same ``n`` examples (rows = examples). Two estimators of HSIC:

* biased (plug-in): ``tr(K H L H) / (n - 1)^2`` with ``H = I - 11^T / n``;
* debiased: the unbiased HSIC of Song et al. (JMLR 2012), needs ``n >= 4``.

Kernels: ``linear`` (``K = X X^T``) and ``rbf`` (``exp(-d^2 / (2 sigma^2))``; by default
``sigma^2 = threshold^2 * median squared distance``, the median taken over the full distance matrix
including its zero diagonal, as in the authors' reference code).

Scaling past memory (never an ``n x n`` matrix over the whole data):

* :class:`LinearCKAAccumulator`: exact streaming linear CKA from float64 feature moments
  (``X^T X``, ``Y^T Y``, ``X^T Y``, sums, ``n``; plus a few more for the debiased estimator).
  Memory ``O(d_x d_y)``; the result equals full-data linear CKA (biased or debiased).
* :class:`MinibatchCKAAccumulator`: the minibatch estimator of Nguyen, Raghu & Kornblith (ICLR 2021,
  "Do Wide and Deep Networks Learn the Same Things?"): the three unbiased HSIC terms are summed over
  batches and CKA is formed once at the end (never an average of per-batch CKA values).
  Memory ``O(m^2)`` for batch size ``m``; any kernel.

:func:`layerwise_cka` picks the streaming path per layer pair when both feature dims are modest
(``<= max_streaming_dim``) and the kernel is linear, the minibatch path otherwise.

Example::

    acc = LinearCKAAccumulator(512, 512)
    for xb, yb in batches:
        acc.update(xb, yb)
    acc.compute()  # == cka(torch.cat(xs), torch.cat(ys))
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from rtl_core.analysis.activations import Pool, eval_mode, iter_paired_activations
from rtl_core.errors import CheckpointError, ConfigError, DataError
from rtl_core.models.devices import default_device

logger = logging.getLogger(__name__)

Kernel = Literal["linear", "rbf"]
Method = Literal["auto", "streaming", "minibatch"]
KERNELS: tuple[str, ...] = ("linear", "rbf")
METHODS: tuple[str, ...] = ("auto", "streaming", "minibatch")
#: Layers whose weights the paper compares before vs after fine-tuning ("feature reuse").
PAPER_WEIGHT_LAYERS: tuple[str, ...] = ("conv1", "layer1.0.conv1", "layer1.0.conv2")

ArrayLike = torch.Tensor | np.ndarray


# ----------------------------------------------------------------------------- helpers
def _features(x: ArrayLike, name: str, device: torch.device | str | None = None) -> torch.Tensor:
    """``(n, ...)`` array -> ``(n, d)`` float64 tensor on ``device`` (default: where ``x`` lives)."""
    t = torch.as_tensor(x)
    if t.ndim < 2:
        raise DataError(f"{name} has shape {tuple(t.shape)}; CKA needs (n_examples, n_features).")
    t = t.flatten(1).to(device=device if device is not None else t.device, dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise DataError(f"{name} contains NaN or infinite values; check the activations / inputs.")
    return t


def _check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ConfigError(f"kernel={kernel!r} is not known; use one of {KERNELS}.")


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[0] != y.shape[0]:
        raise DataError(f"x has {x.shape[0]} examples but y has {y.shape[0]}; CKA needs the same examples.")


def _min_n(debiased: bool, n: int, what: str) -> None:
    need = 4 if debiased else 2
    if n < need:
        est = "debiased (unbiased HSIC, Song et al. 2012)" if debiased else "biased"
        raise DataError(f"{what} has n={n} examples; the {est} CKA estimator needs n >= {need}.")


def _ratio(hxy: float, hxx: float, hyy: float) -> float:
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
    t = _features(x, "x")
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
    t = _features(x, "x")
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
    _check_kernel(kernel)
    return gram_linear(x) if kernel == "linear" else gram_rbf(x, sigma, threshold)


def center_gram(k: torch.Tensor) -> torch.Tensor:
    """``H K H`` with ``H = I - 11^T / n`` (double centring)."""
    k = k.to(torch.float64)
    row = k.mean(0, keepdim=True)
    return k - row - row.T + row.mean()


# ----------------------------------------------------------------------------- HSIC
class _UnbiasedGram:
    """The parts of a Gram matrix that Song et al.'s unbiased HSIC needs: ``K~`` (zero diagonal),
    its row sums ``K~ 1`` and total ``1^T K~ 1``."""

    def __init__(self, k: torch.Tensor) -> None:
        self.n = k.shape[0]
        _min_n(True, self.n, "The Gram matrix")
        self.k = k.to(torch.float64).clone()
        self.k.fill_diagonal_(0.0)
        self.rows = self.k.sum(1)
        self.total = self.rows.sum()

    def hsic(self, other: _UnbiasedGram) -> torch.Tensor:
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
        uk, ul = _UnbiasedGram(k), _UnbiasedGram(l)
        return _ratio(float(uk.hsic(ul)), float(uk.hsic(uk)), float(ul.hsic(ul)))
    _min_n(False, k.shape[0], "The Gram matrix")
    kc, lc = center_gram(k), center_gram(l)
    return _ratio(float((kc * lc).sum()), float((kc * kc).sum()), float((lc * lc).sum()))


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

    The reference implementation (memory ``O(n^2)``); runs on ``device`` or where ``x`` lives.
    """
    _check_kernel(kernel)
    tx = _features(x, "x", device)
    ty = _features(y, "y", tx.device)
    _check_pair(tx, ty)
    _min_n(debiased, tx.shape[0], "x")
    return cka_from_grams(gram(tx, kernel, sigma, threshold), gram(ty, kernel, sigma, threshold), debiased)


# ----------------------------------------------------------------------------- streaming linear CKA
class _FeatureStats:
    """Float64 moments of one representation, shifted by the first batch's mean for conditioning.

    Both HSIC estimators of the linear kernel are invariant to a common shift of all examples,
    so the shift changes nothing but round-off.
    """

    def __init__(self) -> None:
        self.n = 0
        self.shift: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.shift is None:
            d, dev = x.shape[1], x.device
            self.shift = x.mean(0)
            self.s = torch.zeros(d, dtype=torch.float64, device=dev)
            self.xtx = torch.zeros(d, d, dtype=torch.float64, device=dev)
            self.xta = torch.zeros(d, dtype=torch.float64, device=dev)
            self.sa = torch.zeros((), dtype=torch.float64, device=dev)
            self.saa = torch.zeros((), dtype=torch.float64, device=dev)
        elif x.shape[1] != self.shift.shape[0]:
            raise DataError(f"A batch has {x.shape[1]} features; earlier batches had {self.shift.shape[0]}.")
        xs = x.to(self.shift.device) - self.shift
        a = (xs * xs).sum(1)  # squared row norms: the diagonal of K
        self.n += xs.shape[0]
        self.s += xs.sum(0)
        self.xtx.addmm_(xs.T, xs)
        self.xta.addmv_(xs.T, a)
        self.sa += a.sum()
        self.saa += a @ a
        return xs, a


class _CrossStats:
    """Float64 cross moments of two representations: ``X^T Y``, ``sum a_i b_i``, ``X^T b``, ``Y^T a``."""

    def __init__(self) -> None:
        self.xty: torch.Tensor | None = None

    def update(self, xs: torch.Tensor, a: torch.Tensor, ys: torch.Tensor, b: torch.Tensor) -> None:
        ys, b = ys.to(xs.device), b.to(xs.device)
        if self.xty is None:
            dev = xs.device
            self.xty = torch.zeros(xs.shape[1], ys.shape[1], dtype=torch.float64, device=dev)
            self.xtb = torch.zeros(xs.shape[1], dtype=torch.float64, device=dev)
            self.yta = torch.zeros(ys.shape[1], dtype=torch.float64, device=dev)
            self.sab = torch.zeros((), dtype=torch.float64, device=dev)
        self.xty.addmm_(xs.T, ys)
        self.xtb.addmv_(xs.T, b)
        self.yta.addmv_(ys.T, a)
        self.sab += a @ b

    @staticmethod
    def of_self(f: _FeatureStats) -> _CrossStats:
        c = _CrossStats()
        c.xty, c.xtb, c.yta, c.sab = f.xtx, f.xta, f.xta, f.saa
        return c


def _hsic_from_moments(fx: _FeatureStats, fy: _FeatureStats, c: _CrossStats, debiased: bool) -> float:
    """Linear-kernel HSIC from moments, up to a factor common to the three HSIC terms of CKA.

    biased: ``tr(K H L H) = ||X_c^T Y_c||_F^2``;
    debiased (K = X X^T, a = diag K; L, b likewise): ``tr(K~L~) = ||X^T Y||^2 - a.b``,
    ``1'K~1 = ||sum x||^2 - sum a``, ``1'K~L~1 = s_x' X^T Y s_y - s_x.X^T b - s_y.Y^T a + a.b``.
    """
    n = fx.n
    sx, sy = fx.s, fy.s.to(fx.s.device)
    xty = c.xty
    if not debiased:
        centred = xty - torch.outer(sx, sy) / n
        return float((centred * centred).sum())
    tr = (xty * xty).sum() - c.sab
    tot_k = sx @ sx - fx.sa
    tot_l = sy @ sy - fy.sa.to(sx.device)
    cross = sx @ xty @ sy - sx @ c.xtb - sy @ c.yta + c.sab
    return float(tr + tot_k * tot_l / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2))


class LinearCKAAccumulator:
    """Exact streaming linear CKA over batches (memory ``O(d_x d_y)``, float64).

    The result equals full-data linear CKA (biased, or debiased with ``debiased=True``), whatever the
    batching. Runs on the device of the first batch.

    Example::

        acc = LinearCKAAccumulator(256, 512)
        for xb, yb in batches:
            acc.update(xb, yb)
        acc.compute()
    """

    def __init__(self, d_x: int | None = None, d_y: int | None = None, debiased: bool = False) -> None:
        self.d_x, self.d_y, self.debiased = d_x, d_y, debiased
        self._fx, self._fy, self._c = _FeatureStats(), _FeatureStats(), _CrossStats()

    @property
    def n(self) -> int:
        return self._fx.n

    def update(self, x: ArrayLike, y: ArrayLike) -> None:
        """Add a batch: ``x`` ``(m, d_x)`` and ``y`` ``(m, d_y)`` (more axes are flattened)."""
        tx = _features(x, "x batch", self._fx.shift.device if self._fx.shift is not None else None)
        ty = _features(y, "y batch", tx.device)
        _check_pair(tx, ty)
        for name, want, t in (("d_x", self.d_x, tx), ("d_y", self.d_y, ty)):
            if want is not None and t.shape[1] != want:
                raise DataError(f"A batch has {t.shape[1]} features but the accumulator was built with {name}={want}.")
        xs, a = self._fx.update(tx)
        ys, b = self._fy.update(ty)
        self._c.update(xs, a, ys, b)

    def compute(self, debiased: bool | None = None) -> float:
        """CKA over everything seen so far."""
        debiased = self.debiased if debiased is None else debiased
        _min_n(debiased, self.n, "The accumulated data")
        fx, fy = self._fx, self._fy
        return _ratio(
            _hsic_from_moments(fx, fy, self._c, debiased),
            _hsic_from_moments(fx, fx, _CrossStats.of_self(fx), debiased),
            _hsic_from_moments(fy, fy, _CrossStats.of_self(fy), debiased),
        )


# ----------------------------------------------------------------------------- minibatch CKA
class MinibatchCKAAccumulator:
    """Minibatch CKA of Nguyen, Raghu & Kornblith (ICLR 2021).

    Each batch of ``m >= 4`` examples adds its unbiased HSIC terms ``HSIC_1(K, L)``, ``HSIC_1(K, K)`` and
    ``HSIC_1(L, L)`` to running float64 sums; :meth:`compute` returns
    ``sum HSIC_1(K, L) / sqrt(sum HSIC_1(K, K) * sum HSIC_1(L, L))``. Memory ``O(m^2)``.
    With ``kernel="rbf"`` and ``sigma=None`` the median-heuristic bandwidth is taken per batch.
    """

    def __init__(self, kernel: Kernel = "linear", sigma: float | None = None, threshold: float = 1.0) -> None:
        _check_kernel(kernel)
        self.kernel, self.sigma, self.threshold = kernel, sigma, threshold
        self.n_batches = 0
        self.n = 0
        self._sums = [0.0, 0.0, 0.0]  # xy, xx, yy

    def update(self, x: ArrayLike, y: ArrayLike) -> None:
        """Add a batch of ``m >= 4`` examples (a smaller batch is an error: it has no unbiased HSIC)."""
        tx = _features(x, "x batch")
        ty = _features(y, "y batch", tx.device)
        _check_pair(tx, ty)
        _min_n(True, tx.shape[0], "This batch")
        uk = _UnbiasedGram(gram(tx, self.kernel, self.sigma, self.threshold))
        ul = _UnbiasedGram(gram(ty, self.kernel, self.sigma, self.threshold))
        for i, h in enumerate((uk.hsic(ul), uk.hsic(uk), ul.hsic(ul))):
            self._sums[i] += float(h)
        self.n_batches += 1
        self.n += tx.shape[0]

    def compute(self) -> float:
        """Minibatch CKA over every batch seen so far."""
        if self.n_batches == 0:
            raise DataError("MinibatchCKAAccumulator has seen no batch; call update() with batches of >= 4 examples.")
        return _ratio(*self._sums)


class _FusedMoments:
    """Streaming moments of many layers of A and B at once (one matrix product per batch instead of one per
    layer pair, which matters on a busy CPU where every small op waits for its threads).

    Layers are concatenated column-wise; per-layer squared row norms (the diagonals ``a``, ``b`` of the
    linear Gram matrices) are kept as extra columns ``R``. Every quantity :func:`_hsic_from_moments`
    needs for a layer or a pair is a block of the accumulated products.
    """

    def __init__(self, dims_a: list[int], dims_b: list[int], debiased: bool) -> None:
        self.debiased = debiased
        self.off_a, self.off_b = np.cumsum([0, *dims_a]), np.cumsum([0, *dims_b])
        self.n = 0
        self.shift_a: torch.Tensor | None = None

    def _prep(
        self, xs: list[torch.Tensor], shift: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = torch.cat(xs, dim=1)
        shift = x.mean(0) if shift is None else shift
        x = x - shift
        rows = torch.stack([(t * t).sum(1) for t in torch.split(x, [t.shape[1] for t in xs], dim=1)], dim=1)
        return x, rows, shift

    def update(self, xa: list[torch.Tensor], xb: list[torch.Tensor]) -> None:
        a, ra, self.shift_a = self._prep(xa, self.shift_a)
        b, rb, self.shift_b = self._prep(xb, getattr(self, "shift_b", None))
        terms = {"atb": (a, b)}  # the only full product; self terms need just each layer's diagonal block
        if self.debiased:
            terms |= {
                "atra": (a, ra),
                "btrb": (b, rb),
                "atrb": (a, rb),
                "btra": (b, ra),
                "rara": (ra, ra),
                "rbrb": (rb, rb),
                "rarb": (ra, rb),
            }
        if self.n == 0:
            for key, (u, v) in terms.items():
                setattr(self, key, torch.zeros(u.shape[1], v.shape[1], dtype=torch.float64, device=u.device))
            self.sa, self.sb = torch.zeros_like(a[0]), torch.zeros_like(b[0])
            self.sra, self.srb = torch.zeros_like(ra[0]), torch.zeros_like(rb[0])
            self.ata = [torch.zeros(d, d, dtype=torch.float64, device=a.device) for d in np.diff(self.off_a)]
            self.btb = [torch.zeros(d, d, dtype=torch.float64, device=b.device) for d in np.diff(self.off_b)]
        for key, (u, v) in terms.items():
            getattr(self, key).addmm_(u.T, v)
        for blocks, x, off in ((self.ata, a, self.off_a), (self.btb, b, self.off_b)):
            for i, block in enumerate(blocks):
                part = x[:, int(off[i]) : int(off[i + 1])]
                block.addmm_(part.T, part)
        self.sa += a.sum(0)
        self.sb += b.sum(0)
        self.sra += ra.sum(0)
        self.srb += rb.sum(0)
        self.n += a.shape[0]

    def _stats(self, side: str, i: int) -> "_FeatureStats":
        off = self.off_a if side == "a" else self.off_b
        sl = slice(int(off[i]), int(off[i + 1]))
        f = _FeatureStats.__new__(_FeatureStats)
        f.n, f.s = self.n, (self.sa if side == "a" else self.sb)[sl]
        f.xtx = (self.ata if side == "a" else self.btb)[i]
        f.sa = (self.sra if side == "a" else self.srb)[i]
        f.xta = (self.atra if side == "a" else self.btrb)[sl, i] if self.debiased else None
        f.saa = (self.rara if side == "a" else self.rbrb)[i, i] if self.debiased else None
        return f

    def cka(self, i: int, j: int) -> float:
        fa, fb = self._stats("a", i), self._stats("b", j)
        sa, sb = slice(int(self.off_a[i]), int(self.off_a[i + 1])), slice(int(self.off_b[j]), int(self.off_b[j + 1]))
        c = _CrossStats()
        c.xty = self.atb[sa, sb]
        if self.debiased:
            c.xtb, c.yta, c.sab = self.atrb[sa, j], self.btra[sb, i], self.rarb[i, j]
        return _ratio(
            _hsic_from_moments(fa, fb, c, self.debiased),
            _hsic_from_moments(fa, fa, _CrossStats.of_self(fa), self.debiased),
            _hsic_from_moments(fb, fb, _CrossStats.of_self(fb), self.debiased),
        )


# ----------------------------------------------------------------------------- layer-wise CKA
class LayerwiseCKA:
    """CKA between every layer of A and every layer of B, fed batch by batch.

    Per layer pair: exact streaming linear CKA when ``kernel == "linear"`` and both feature dims are
    ``<= max_streaming_dim`` (``method="auto"``), the minibatch estimator otherwise. The streaming path
    gives the biased or debiased full-data value (``debiased``); the minibatch estimator is always
    built from unbiased HSIC. Per-layer moments and per-batch Gram matrices are shared by all pairs.
    """

    def __init__(
        self,
        layers_a: Sequence[str],
        layers_b: Sequence[str],
        kernel: Kernel = "linear",
        debiased: bool = False,
        method: Method = "auto",
        max_streaming_dim: int = 4096,
        sigma: float | None = None,
        threshold: float = 1.0,
    ) -> None:
        _check_kernel(kernel)
        if method not in METHODS:
            raise ConfigError(f"method={method!r} is not known; use one of {METHODS}.")
        if method == "streaming" and kernel != "linear":
            raise ConfigError("method='streaming' exists only for kernel='linear'; use 'minibatch' or 'auto'.")
        if not layers_a or not layers_b:
            raise ConfigError("layers_a and layers_b must each name at least one layer.")
        self.layers_a, self.layers_b = list(layers_a), list(layers_b)
        self.kernel, self.debiased, self.method = kernel, debiased, method
        self.max_streaming_dim, self.sigma, self.threshold = max_streaming_dim, sigma, threshold
        self.streaming_a: list[bool] | None = None
        self.streaming_b: list[bool] | None = None
        self.n = 0
        self.n_minibatches = 0
        self.skipped_examples = 0

    def _streams(self, d: int) -> bool:
        if self.kernel != "linear" or self.method == "minibatch":
            return False
        return self.method == "streaming" or d <= self.max_streaming_dim

    def _setup(self, dims_a: list[int], dims_b: list[int]) -> None:
        self.streaming_a = [self._streams(d) for d in dims_a]
        self.streaming_b = [self._streams(d) for d in dims_b]
        self.pair_streams = np.outer(self.streaming_a, self.streaming_b)
        self.gram_a = [not self.pair_streams[i].all() for i in range(len(self.layers_a))]
        self.gram_b = [not self.pair_streams[:, j].all() for j in range(len(self.layers_b))]
        self.stream_idx_a = [i for i, s in enumerate(self.streaming_a) if s]
        self.stream_idx_b = [j for j, s in enumerate(self.streaming_b) if s]
        self.moments = (
            _FusedMoments([dims_a[i] for i in self.stream_idx_a], [dims_b[j] for j in self.stream_idx_b], self.debiased)
            if self.stream_idx_a and self.stream_idx_b
            else None
        )
        self.mb_self_a = np.zeros(len(self.layers_a))
        self.mb_self_b = np.zeros(len(self.layers_b))
        self.mb_cross = np.zeros((len(self.layers_a), len(self.layers_b)))
        for tag, names, dims, flags in (
            ("A", self.layers_a, dims_a, self.streaming_a),
            ("B", self.layers_b, dims_b, self.streaming_b),
        ):
            for name, d, flag in zip(names, dims, flags):
                logger.info("CKA layer %s.%s: %d features -> %s", tag, name, d, "streaming" if flag else "minibatch")
        if self.pair_streams.any() and not self.pair_streams.all() and not self.debiased:
            logger.warning(
                "CKA matrix mixes estimators: streaming pairs are biased full-data CKA, minibatch pairs use "
                "unbiased HSIC (Nguyen et al. 2021). Pass debiased=True, or method='minibatch', for one estimator."
            )

    def update(self, acts_a: Mapping[str, torch.Tensor], acts_b: Mapping[str, torch.Tensor]) -> None:
        """Add one batch: activations of the same examples, by layer name, for model A and model B."""
        xa = [_features(acts_a[n], f"activations of A.{n}") for n in self.layers_a]
        xb = [_features(acts_b[n], f"activations of B.{n}", xa[0].device) for n in self.layers_b]
        m = xa[0].shape[0]
        if any(t.shape[0] != m for t in xa + xb):
            raise DataError("Layers returned different batch sizes; CKA needs the same examples in every layer.")
        if self.streaming_a is None:
            self._setup([t.shape[1] for t in xa], [t.shape[1] for t in xb])
        self.n += m
        if self.moments is not None:
            self.moments.update([xa[i] for i in self.stream_idx_a], [xb[j] for j in self.stream_idx_b])
        if not (any(self.gram_a) or any(self.gram_b)):
            return
        if m < 4:
            self.skipped_examples += m
            warnings.warn(
                f"A batch of {m} examples is too small for minibatch CKA (needs >= 4); its examples are left "
                "out of the minibatch pairs. Use drop_last=True or a batch size that divides the data.",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        ga = [self._ugram(t) if g else None for t, g in zip(xa, self.gram_a)]
        gb = [self._ugram(t) if g else None for t, g in zip(xb, self.gram_b)]
        for i, u in enumerate(ga):
            if u is not None:
                self.mb_self_a[i] += float(u.hsic(u))
        for j, u in enumerate(gb):
            if u is not None:
                self.mb_self_b[j] += float(u.hsic(u))
        for i, j in zip(*np.nonzero(~self.pair_streams)):
            self.mb_cross[i, j] += float(ga[i].hsic(gb[j]))
        self.n_minibatches += 1

    def _ugram(self, t: torch.Tensor) -> _UnbiasedGram:
        return _UnbiasedGram(gram(t, self.kernel, self.sigma, self.threshold))

    def compute(self) -> np.ndarray:
        """The ``len(layers_a) x len(layers_b)`` CKA matrix."""
        if self.streaming_a is None:
            raise DataError("LayerwiseCKA has seen no batch; the data loader may be empty.")
        out = np.full((len(self.layers_a), len(self.layers_b)), np.nan)
        if self.pair_streams.any():
            _min_n(self.debiased, self.n, "The data")
        if not self.pair_streams.all() and self.n_minibatches == 0:
            raise DataError("No batch had >= 4 examples, so minibatch CKA is undefined; use a larger batch size.")
        for i in range(len(self.layers_a)):
            for j in range(len(self.layers_b)):
                if self.pair_streams[i, j]:
                    out[i, j] = self.moments.cka(self.stream_idx_a.index(i), self.stream_idx_b.index(j))
                else:
                    out[i, j] = _ratio(self.mb_cross[i, j], self.mb_self_a[i], self.mb_self_b[j])
        return out


def layerwise_cka(
    model_a: nn.Module,
    model_b: nn.Module,
    loader: Iterable[Any],
    layers_a: Sequence[str],
    layers_b: Sequence[str],
    *,
    kernel: Kernel = "linear",
    debiased: bool = False,
    pool: Pool = "avg",
    method: Method = "auto",
    max_streaming_dim: int = 4096,
    sigma: float | None = None,
    threshold: float = 1.0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> np.ndarray:
    """CKA matrix ``(len(layers_a), len(layers_b))`` of two models over one pass of ``loader``.

    Activations come from forward hooks (see :mod:`rtl_core.analysis.activations` for ``pool``:
    ``"avg"`` global-average-pools conv maps, ``"flatten"`` keeps them whole as Kornblith et al.).
    Models run in eval mode without gradients on ``device`` (default: CUDA when available); they are
    moved there for the pass and back afterwards, and their train/eval flags are restored.
    """
    from tqdm.auto import tqdm

    dev = default_device(device)
    engine = LayerwiseCKA(layers_a, layers_b, kernel, debiased, method, max_streaming_dim, sigma, threshold)
    homes = [next(m.parameters(), torch.empty(0)).device for m in (model_a, model_b)]
    model_a.to(dev)
    model_b.to(dev)
    try:
        with eval_mode(model_a, model_b):
            batches = tqdm(loader, desc="CKA", disable=not progress, leave=False)
            for acts_a, acts_b in iter_paired_activations(model_a, model_b, batches, layers_a, layers_b, pool, dev):
                engine.update(acts_a, acts_b)
    finally:
        model_b.to(homes[1])
        model_a.to(homes[0])
    return engine.compute()


# ----------------------------------------------------------------------------- weight-space CKA
def _weight(state: Mapping[str, torch.Tensor], layer: str, prefix: str, which: str) -> torch.Tensor:
    for key in (f"{prefix}{layer}.weight", f"{prefix}{layer}"):
        if key in state:
            return torch.as_tensor(state[key]).detach()
    convs = [k for k in state if k.endswith(".weight") and torch.as_tensor(state[k]).ndim == 4][:6]
    raise CheckpointError(
        f"state_dict {which} has no key '{prefix}{layer}.weight'; conv weights there include {convs}. "
        "Pass torchvision layer names (e.g. 'layer1.0.conv1') and set prefix= if keys carry one (e.g. 'encoder.')."
    )


def weight_cka(
    state_dict_a: Mapping[str, torch.Tensor] | nn.Module,
    state_dict_b: Mapping[str, torch.Tensor] | nn.Module,
    layers: Sequence[str] = PAPER_WEIGHT_LAYERS,
    *,
    kernel: Kernel = "rbf",
    debiased: bool = False,
    threshold: float = 1.0,
    prefix: str = "",
) -> dict[str, float]:
    """Weight-space CKA per layer, the paper's "feature reuse" / "feature uniqueness" analysis.

    Each output filter is an example and its flattened weights (``in * kh * kw``) are its features;
    CKA (RBF kernel by default, as in the paper) compares the filters of the same layer in two state
    dicts: the same model before vs after fine-tuning (feature reuse), or two differently pretrained
    models (feature uniqueness). ``layers`` are module names (default: conv1, layer1[0].conv1,
    layer1[0].conv2).
    """
    sd_a = state_dict_a.state_dict() if isinstance(state_dict_a, nn.Module) else state_dict_a
    sd_b = state_dict_b.state_dict() if isinstance(state_dict_b, nn.Module) else state_dict_b
    out: dict[str, float] = {}
    for layer in layers:
        wa, wb = _weight(sd_a, layer, prefix, "A"), _weight(sd_b, layer, prefix, "B")
        if wa.ndim < 2 or wb.ndim < 2 or wa.shape[0] != wb.shape[0]:
            raise CheckpointError(
                f"Layer '{layer}': weights of shape {tuple(wa.shape)} and {tuple(wb.shape)} do not have the same "
                "number of output filters; compare the same layer of the same architecture."
            )
        out[layer] = cka(wa, wb, kernel=kernel, debiased=debiased, threshold=threshold)
    return out

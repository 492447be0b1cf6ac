"""Layer-wise CKA of whole networks, streamed over batches: one engine (:class:`LayerwiseCKA`) and its drivers.

The kernel maths (Gram matrices, the biased and debiased HSIC estimators, full-data CKA) live in
:mod:`rtl_core.analysis.hsic`. Here the same estimators are accumulated batch by batch, never holding an
``n x n`` matrix over the whole data. Per layer pair the engine takes one of two paths:

* **streaming** (linear kernel, both feature dims ``<= max_streaming_dim``): exact full-data linear CKA from
  float64 feature moments (``X^T X``, ``Y^T Y``, ``X^T Y``, sums, ``n``; a few more for the debiased
  estimator). Memory ``O(d_x d_y)``; equals :func:`~rtl_core.analysis.hsic.cka` on the concatenated data.
* **minibatch** (any kernel, any width): the estimator of Nguyen, Raghu & Kornblith (ICLR 2021, "Do Wide and
  Deep Networks Learn the Same Things?"): the three unbiased HSIC terms are summed over batches and CKA is
  formed once at the end (never an average of per-batch CKA values). Memory ``O(m^2)`` for batch size ``m``.

:func:`layerwise_cka` runs two models over a loader with forward hooks and feeds the engine; :func:`weight_cka`
is the paper's weight-space comparison ("feature reuse").

Example::

    engine = LayerwiseCKA(["layer1", "layer4"], ["layer1", "layer4"], debiased=True)
    for acts_a, acts_b in batches:  # dicts: layer name -> (m, d) activations of the same m examples
        engine.update(acts_a, acts_b)
    engine.compute()  # 2 x 2 matrix
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from rtl_core.analysis.activations import Pool, eval_mode, iter_paired_activations
from rtl_core.analysis.hsic import (
    Kernel,
    UnbiasedGram,
    as_features,
    check_kernel,
    check_n,
    cka,
    cka_ratio,
    gram,
)
from rtl_core.errors import CheckpointError, ConfigError, DataError
from rtl_core.models.devices import default_device

logger = logging.getLogger(__name__)

Method = Literal["auto", "streaming", "minibatch"]
METHODS: tuple[str, ...] = ("auto", "streaming", "minibatch")
#: Layers whose weights the paper compares before vs after fine-tuning ("feature reuse").
PAPER_WEIGHT_LAYERS: tuple[str, ...] = ("conv1", "layer1.0.conv1", "layer1.0.conv2")


# ----------------------------------------------------------------------------- streaming moments
@dataclass
class _Moments:
    """Float64 moments of one representation ``X`` (rows shifted by the first batch's mean, which both HSIC
    estimators of the linear kernel ignore): ``n``, ``s = X^T 1``, ``X^T X``, and for the debiased estimator the
    squared row norms ``a = diag(X X^T)`` as ``sum a``, ``X^T a`` and ``a.a``."""

    n: int
    s: torch.Tensor
    xtx: torch.Tensor
    sa: torch.Tensor
    xta: torch.Tensor | None
    saa: torch.Tensor | None


@dataclass
class _Cross:
    """Float64 cross moments of two representations: ``X^T Y``, ``X^T b``, ``Y^T a``, ``a.b``."""

    xty: torch.Tensor
    xtb: torch.Tensor | None = None
    yta: torch.Tensor | None = None
    sab: torch.Tensor | None = None

    @staticmethod
    def of_self(m: _Moments) -> _Cross:
        return _Cross(m.xtx, m.xta, m.xta, m.saa)


def _hsic_from_moments(fx: _Moments, fy: _Moments, c: _Cross, debiased: bool) -> float:
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

    def _stats(self, side: str, i: int) -> _Moments:
        off = self.off_a if side == "a" else self.off_b
        sl = slice(int(off[i]), int(off[i + 1]))
        a = side == "a"
        return _Moments(
            n=self.n,
            s=(self.sa if a else self.sb)[sl],
            xtx=(self.ata if a else self.btb)[i],
            sa=(self.sra if a else self.srb)[i],
            xta=(self.atra if a else self.btrb)[sl, i] if self.debiased else None,
            saa=(self.rara if a else self.rbrb)[i, i] if self.debiased else None,
        )

    def cka(self, i: int, j: int) -> float:
        fa, fb = self._stats("a", i), self._stats("b", j)
        sa, sb = slice(int(self.off_a[i]), int(self.off_a[i + 1])), slice(int(self.off_b[j]), int(self.off_b[j + 1]))
        c = _Cross(self.atb[sa, sb])
        if self.debiased:
            c.xtb, c.yta, c.sab = self.atrb[sa, j], self.btra[sb, i], self.rarb[i, j]
        return cka_ratio(
            _hsic_from_moments(fa, fb, c, self.debiased),
            _hsic_from_moments(fa, fa, _Cross.of_self(fa), self.debiased),
            _hsic_from_moments(fb, fb, _Cross.of_self(fb), self.debiased),
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
        check_kernel(kernel)
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
        xa = [as_features(acts_a[n], f"activations of A.{n}") for n in self.layers_a]
        xb = [as_features(acts_b[n], f"activations of B.{n}", xa[0].device) for n in self.layers_b]
        m = xa[0].shape[0]
        if any(t.shape[0] != m for t in xa + xb):
            raise DataError("Layers returned different batch sizes; CKA needs the same examples in every layer.")
        dims_a, dims_b = [t.shape[1] for t in xa], [t.shape[1] for t in xb]
        if self.streaming_a is None:
            self._setup(dims_a, dims_b)
            self.dims_a, self.dims_b = dims_a, dims_b
        for tag, names, dims, first in (
            ("A", self.layers_a, dims_a, self.dims_a),
            ("B", self.layers_b, dims_b, self.dims_b),
        ):
            for name, d, d0 in zip(names, dims, first):
                if d != d0:
                    raise DataError(
                        f"Layer {tag}.{name} has {d} features in this batch but {d0} in the first; feed activations "
                        "of the same layers at the same input size."
                    )
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

    def _ugram(self, t: torch.Tensor) -> UnbiasedGram:
        return UnbiasedGram(gram(t, self.kernel, self.sigma, self.threshold))

    def compute(self) -> np.ndarray:
        """The ``len(layers_a) x len(layers_b)`` CKA matrix."""
        if self.streaming_a is None:
            raise DataError("LayerwiseCKA has seen no batch; the data loader may be empty.")
        out = np.full((len(self.layers_a), len(self.layers_b)), np.nan)
        if self.pair_streams.any():
            check_n(self.debiased, self.n, "The data")
        if not self.pair_streams.all() and self.n_minibatches == 0:
            raise DataError("No batch had >= 4 examples, so minibatch CKA is undefined; use a larger batch size.")
        for i in range(len(self.layers_a)):
            for j in range(len(self.layers_b)):
                if self.pair_streams[i, j]:
                    out[i, j] = self.moments.cka(self.stream_idx_a.index(i), self.stream_idx_b.index(j))
                else:
                    out[i, j] = cka_ratio(self.mb_cross[i, j], self.mb_self_a[i], self.mb_self_b[j])
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
    paired_inputs: bool = False,
) -> np.ndarray:
    """CKA matrix ``(len(layers_a), len(layers_b))`` of two models over one pass of ``loader``.

    ``loader`` yields image batches, or with ``paired_inputs`` ``(inputs_a, inputs_b)`` pairs: the same
    examples prepared for each model (e.g. each normalised with its own mean/std).

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
            paired = iter_paired_activations(model_a, model_b, batches, layers_a, layers_b, pool, dev, paired_inputs)
            for acts_a, acts_b in paired:
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

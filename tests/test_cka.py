"""Tests of rtl_core.analysis.hsic and rtl_core.analysis.cka against an independent O(n^2) numpy implementation.

Random matrices are used only for the pure-maths tests; the model plumbing tests feed real images
from the demo data pack (PneumoniaMNIST).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from scipy.spatial.distance import cdist
from torch.utils.data import DataLoader, TensorDataset

from rtl_core.analysis.activations import ActivationRecorder, collect_activations
from rtl_core.analysis.cka import LayerwiseCKA, layerwise_cka, weight_cka
from rtl_core.analysis.hsic import cka
from rtl_core.bench.cka_bench import bench_cka
from rtl_core.errors import CheckpointError, ConfigError, DataError
from rtl_core.models.backbones import RESNET_STAGES

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


# ----------------------------------------------------------------------------- independent reference
def ref_gram(x: np.ndarray, kernel: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if kernel == "linear":
        return x @ x.T
    d2 = cdist(x, x, "sqeuclidean")
    return np.exp(-d2 / (2.0 * np.median(d2)))


def ref_hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ l @ h) / (n - 1) ** 2)


def ref_hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012): [tr(K~L~) + 1'K~1 1'L~1/((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))."""
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(n)
    tr = np.trace(kt @ lt)
    totals = (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * (one @ kt @ lt @ one)
    return float((tr + totals - cross) / (n * (n - 3)))


def ref_cka(x: np.ndarray, y: np.ndarray, kernel: str = "linear", debiased: bool = False) -> float:
    k, l = ref_gram(x, kernel), ref_gram(y, kernel)
    h = ref_hsic_unbiased if debiased else ref_hsic_biased
    return h(k, l) / np.sqrt(h(k, k) * h(l, l))


def ref_minibatch_cka(xs: list[np.ndarray], ys: list[np.ndarray], kernel: str = "linear") -> float:
    """Nguyen et al. (2021): sums of per-batch unbiased HSIC terms, one ratio at the end."""
    kl = kk = ll = 0.0
    for x, y in zip(xs, ys):
        k, l = ref_gram(x, kernel), ref_gram(y, kernel)
        kl += ref_hsic_unbiased(k, l)
        kk += ref_hsic_unbiased(k, k)
        ll += ref_hsic_unbiased(l, l)
    return kl / np.sqrt(kk * ll)


def one_layer_engine(method: str, debiased: bool = False, kernel: str = "linear") -> LayerwiseCKA:
    return LayerwiseCKA(["x"], ["y"], kernel=kernel, debiased=debiased, method=method)  # type: ignore[arg-type]


def feed(engine: LayerwiseCKA, xs, ys) -> LayerwiseCKA:
    for xb, yb in zip(xs, ys):
        engine.update({"x": torch.as_tensor(xb)}, {"y": torch.as_tensor(yb)})
    return engine


# ----------------------------------------------------------------------------- data
def related_pair(n: int, seed: int = 0, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """x (n, 24) and y (n, 16), y partly a linear function of x: CKA strictly between 0 and 1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 24)) * np.linspace(0.5, 2.0, 24) + offset
    y = x[:, :12] @ rng.normal(size=(12, 16)) + 1.5 * rng.normal(size=(n, 16)) + offset
    return x, y


@pytest.fixture(scope="module")
def real_images() -> torch.Tensor:
    """16 real chest X-rays (PneumoniaMNIST, 28 px) as (16, 3, 28, 28) floats in [0, 1]."""
    with np.load(DATA / "medmnist" / "pneumoniamnist.npz", allow_pickle=False) as pack:
        imgs = pack["test_images"][:16]
    return torch.from_numpy(imgs).float().div(255.0).unsqueeze(1).repeat(1, 3, 1, 1)


def resnet(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None)


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_matches_independent_reference(kernel: str, debiased: bool) -> None:
    x, y = related_pair(60)
    got = cka(torch.from_numpy(x), torch.from_numpy(y), kernel=kernel, debiased=debiased)
    assert 0.05 < got < 0.95
    assert got == pytest.approx(ref_cka(x, y, kernel, debiased), abs=1e-10)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_self_similarity_is_one(kernel: str, debiased: bool) -> None:
    x, _ = related_pair(50, seed=1)
    assert cka(x, x, kernel=kernel, debiased=debiased) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_invariant_to_orthogonal_maps_and_isotropic_scaling(kernel: str, debiased: bool) -> None:
    x, y = related_pair(80, seed=2)
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(24, 24)))
    base = cka(x, y, kernel=kernel, debiased=debiased)
    assert cka(x @ q, y, kernel=kernel, debiased=debiased) == pytest.approx(base, abs=1e-9)
    assert cka(7.3 * x, 0.01 * y, kernel=kernel, debiased=debiased) == pytest.approx(base, abs=1e-9)


def test_not_invariant_to_arbitrary_invertible_linear_maps() -> None:
    x, y = related_pair(80, seed=4)
    rng = np.random.default_rng(5)
    a = np.diag(np.geomspace(0.01, 10.0, 24)) @ rng.normal(size=(24, 24))
    assert abs(np.linalg.det(a)) > 0
    base, mapped = cka(x, y), cka(x @ a, y)
    assert mapped == pytest.approx(ref_cka(x @ a, y), abs=1e-10)
    assert abs(mapped - base) > 0.05


def test_debiased_removes_bias_on_independent_features() -> None:
    rng = np.random.default_rng(6)
    biased, debiased = [], []
    for _ in range(3):
        x, y = rng.normal(size=(256, 64)), rng.normal(size=(256, 64))
        biased.append(cka(x, y))
        debiased.append(cka(x, y, debiased=True))
    assert min(biased) > 0.1  # plug-in HSIC is biased upwards when d is not << n
    assert max(abs(v) for v in debiased) < 0.03


# ----------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("debiased", [False, True])
def test_streaming_linear_equals_full_data(debiased: bool) -> None:
    x, y = related_pair(203, seed=7, offset=50.0)  # large mean: stresses the float64 accumulation
    cuts = [5, 64, 70, 150]
    xs = [torch.from_numpy(b).float() for b in np.array_split(x, cuts)]
    ys = [torch.from_numpy(b).float() for b in np.array_split(y, cuts)]
    engine = feed(one_layer_engine("streaming", debiased), xs, ys)
    assert engine.n == 203 and engine.streaming_a == [True]
    full = cka(torch.from_numpy(x).float(), torch.from_numpy(y).float(), debiased=debiased)
    got = float(engine.compute()[0, 0])
    assert got == pytest.approx(full, abs=1e-6)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    assert got == pytest.approx(ref_cka(x32, y32, "linear", debiased), abs=1e-6)


def test_streaming_rejects_a_change_of_feature_count() -> None:
    engine = feed(one_layer_engine("streaming"), [torch.zeros(5, 24)], [torch.randn(5, 16)])
    with pytest.raises(DataError, match="B.y has 15 features in this batch but 16"):
        engine.update({"x": torch.zeros(5, 24)}, {"y": torch.zeros(5, 15)})


# ----------------------------------------------------------------------------- minibatch
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_minibatch_matches_reference_formula(kernel: str) -> None:
    x, y = related_pair(120, seed=8)
    xs, ys = np.array_split(x, 4), np.array_split(y, 4)
    engine = feed(one_layer_engine("minibatch", kernel=kernel), xs, ys)
    assert engine.n_minibatches == 4
    assert engine.compute()[0, 0] == pytest.approx(ref_minibatch_cka(xs, ys, kernel), abs=1e-10)


def test_minibatch_average_over_batchings_matches_full_debiased() -> None:
    """Unbiased HSIC is a U-statistic, so its mean over random batchings is the full-data value."""
    x, y = related_pair(512, seed=9)
    full = cka(x, y, debiased=True)
    rng = np.random.default_rng(10)
    estimates = []
    for _ in range(20):
        parts = np.array_split(rng.permutation(512), 8)  # batches of 64
        engine = feed(one_layer_engine("minibatch"), [x[i] for i in parts], [y[i] for i in parts])
        estimates.append(engine.compute()[0, 0])
    assert np.std(estimates) > 1e-4  # the batchings do differ
    assert np.mean(estimates) == pytest.approx(full, abs=0.01)


def test_layerwise_engine_mixes_paths_and_skips_tiny_batches() -> None:
    rng = np.random.default_rng(11)
    x_small, x_big = rng.normal(size=(15, 8)), rng.normal(size=(15, 5000))
    y_big = x_big + 2.0 * rng.normal(size=(15, 5000))
    engine = LayerwiseCKA(["small", "big"], ["big"], debiased=True)
    batches = [slice(0, 6), slice(6, 12), slice(12, 15)]
    with pytest.warns(RuntimeWarning, match="too small"):
        for s in batches:
            engine.update({"small": x_small[s], "big": x_big[s]}, {"big": y_big[s]})
    assert engine.streaming_a == [True, False] and engine.streaming_b == [False]
    assert engine.skipped_examples == 3 and engine.n == 15
    mat = engine.compute()
    xs, ys = [x_big[s] for s in batches[:2]], [y_big[s] for s in batches[:2]]
    assert mat[1, 0] == pytest.approx(ref_minibatch_cka(xs, ys), abs=1e-10)
    xs = [x_small[s] for s in batches[:2]]
    assert mat[0, 0] == pytest.approx(ref_minibatch_cka(xs, ys), abs=1e-10)


# ----------------------------------------------------------------------------- errors
def test_debiased_needs_four_examples() -> None:
    x, y = related_pair(3)
    with pytest.raises(DataError, match="n >= 4"):
        cka(x, y, debiased=True)
    with pytest.warns(RuntimeWarning, match="too small"), pytest.raises(DataError, match=">= 4 examples"):
        feed(one_layer_engine("minibatch"), [x], [y]).compute()
    with pytest.raises(DataError, match="n >= 4"):
        feed(one_layer_engine("streaming", debiased=True), [x], [y]).compute()
    assert np.isfinite(feed(one_layer_engine("streaming"), [x], [y]).compute()[0, 0])  # biased: defined at n = 3


def test_bad_inputs_raise_clear_errors() -> None:
    x, y = related_pair(10)
    with pytest.raises(DataError, match="same examples"):
        cka(x, y[:9])
    with pytest.raises(ConfigError, match="kernel"):
        cka(x, y, kernel="poly")  # type: ignore[arg-type]
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        cka(bad, y)
    with pytest.raises(DataError, match="no batch"):
        one_layer_engine("minibatch").compute()
    with pytest.raises(DataError, match="different batch sizes"):
        one_layer_engine("auto").update({"x": torch.zeros(5, 3)}, {"y": torch.zeros(4, 3)})


def test_constant_representation_gives_nan_with_warning() -> None:
    x, _ = related_pair(10)
    with pytest.warns(RuntimeWarning, match="undefined"):
        assert np.isnan(cka(x, np.ones((10, 3))))


# ----------------------------------------------------------------------------- layer-wise, real images
def test_layerwise_self_comparison_has_unit_diagonal(real_images: torch.Tensor, caplog) -> None:
    model = resnet(0)
    model.train()
    loader = DataLoader(TensorDataset(real_images), batch_size=4)
    layers = list(RESNET_STAGES)
    with caplog.at_level(logging.INFO, logger="rtl_core.analysis.cka"):
        mat = layerwise_cka(
            model, model, loader, layers, layers, pool="flatten", max_streaming_dim=1024, device="cpu", progress=False
        )
    # flattened conv1..layer2 (64*14*14, 64*7*7, 128*4*4 features) take the minibatch path, the others stream
    assert "A.conv1: 12544 features -> minibatch" in caplog.text
    assert "B.layer2: 2048 features -> minibatch" in caplog.text
    assert "B.layer3: 1024 features -> streaming" in caplog.text
    assert mat.shape == (6, 6)
    np.testing.assert_allclose(np.diag(mat), 1.0, atol=1e-9)
    np.testing.assert_allclose(mat, mat.T, atol=1e-9)
    off = mat[~np.eye(6, dtype=bool)]
    assert np.all((off > 0) & (off <= 1 + 1e-9))
    assert mat[0, 1] < 0.95  # conv1 vs layer1 differ
    # at 28 px the layer4 map is 1 x 1, so flattening it equals the avgpool output
    assert mat[4, 5] == pytest.approx(1.0, abs=1e-9)
    assert model.training  # flags restored


@pytest.mark.parametrize("debiased", [False, True])
def test_layerwise_streaming_equals_full_data_cka(real_images: torch.Tensor, debiased: bool) -> None:
    model_a, model_b = resnet(1), resnet(2)
    model_a.eval(), model_b.eval()
    loader = DataLoader(TensorDataset(real_images), batch_size=6)  # uneven last batch
    layers_a, layers_b = ["layer1", "layer4"], ["conv1", "layer2", "avgpool"]
    mat = layerwise_cka(
        model_a, model_b, loader, layers_a, layers_b, debiased=debiased, pool="avg", device="cpu", progress=False
    )
    acts_a = collect_activations(model_a, loader, layers_a, pool="avg")
    acts_b = collect_activations(model_b, loader, layers_b, pool="avg")
    assert acts_a["layer4"].shape == (16, 512)
    for i, la in enumerate(layers_a):
        for j, lb in enumerate(layers_b):
            expect = ref_cka(acts_a[la].double().numpy(), acts_b[lb].double().numpy(), "linear", debiased)
            assert mat[i, j] == pytest.approx(expect, abs=1e-6)


def test_layerwise_minibatch_method_matches_reference(real_images: torch.Tensor) -> None:
    model_a, model_b = resnet(3), resnet(4)
    loader = DataLoader(TensorDataset(real_images), batch_size=8)
    mat = layerwise_cka(
        model_a, model_b, loader, ["layer2"], ["layer3"], kernel="rbf", method="minibatch", device="cpu", progress=False
    )
    xs, ys = [], []
    model_a.eval(), model_b.eval()
    with ActivationRecorder(model_a, ["layer2"]) as ra, ActivationRecorder(model_b, ["layer3"]) as rb:
        for (xb,) in loader:
            with torch.no_grad():
                model_a(xb)
                model_b(xb)
            xs.append(ra.pop()["layer2"].double().numpy())
            ys.append(rb.pop()["layer3"].double().numpy())
    assert mat[0, 0] == pytest.approx(ref_minibatch_cka(xs, ys, "rbf"), abs=1e-10)


def test_layerwise_paired_inputs_feed_each_model_its_own_batch(real_images: torch.Tensor) -> None:
    """The study's path: each model gets its own copy of the batch. A model against itself scores 1 on identical
    copies and less on inverted ones (so B really ran on B's inputs, even when B is the same module as A)."""
    model = resnet(5)
    loader = DataLoader(TensorDataset(real_images), batch_size=8)
    pairs = [(xb, xb) for (xb,) in loader]
    same = layerwise_cka(model, model, pairs, ["layer4"], ["layer4"], paired_inputs=True, device="cpu", progress=False)
    assert same[0, 0] == pytest.approx(1.0, abs=1e-9)
    shifted = [(xb, 1.0 - xb) for (xb,) in loader]  # inverted images for B
    other = layerwise_cka(
        model, model, shifted, ["layer4"], ["layer4"], paired_inputs=True, device="cpu", progress=False
    )
    assert other[0, 0] < 0.999
    with pytest.raises(DataError, match="inputs_a, inputs_b"):
        layerwise_cka(model, model, loader, ["layer4"], ["layer4"], paired_inputs=True, device="cpu", progress=False)


def test_layerwise_rejects_unknown_layers_and_methods(real_images: torch.Tensor) -> None:
    model = resnet(0)
    loader = DataLoader(TensorDataset(real_images), batch_size=8)
    with pytest.raises(ConfigError, match="layer9"):
        layerwise_cka(model, model, loader, ["layer9"], ["layer1"], device="cpu", progress=False)
    with pytest.raises(ConfigError, match="streaming"):
        LayerwiseCKA(["a"], ["b"], kernel="rbf", method="streaming")


# ----------------------------------------------------------------------------- weight space
def test_weight_cka_feature_reuse() -> None:
    a, b = resnet(5), resnet(6)
    same = weight_cka(a.state_dict(), a.state_dict())
    assert list(same) == ["conv1", "layer1.0.conv1", "layer1.0.conv2"]
    assert all(v == pytest.approx(1.0, abs=1e-10) for v in same.values())
    diff = weight_cka(a, b)
    for layer, value in diff.items():
        name = f"{layer}.weight"
        wa = a.state_dict()[name].flatten(1).double().numpy()
        wb = b.state_dict()[name].flatten(1).double().numpy()
        assert value == pytest.approx(ref_cka(wa, wb, "rbf"), abs=1e-10)
        assert value < 0.99
    prefixed = {f"encoder.{k}": v for k, v in a.state_dict().items()}
    assert weight_cka(prefixed, prefixed, prefix="encoder.")["conv1"] == pytest.approx(1.0)
    with pytest.raises(CheckpointError, match="encoder.conv1.weight"):
        weight_cka(a.state_dict(), a.state_dict(), prefix="encoder.")


# ----------------------------------------------------------------------------- benchmark
def test_bench_cka_runs_both_variants(real_images: torch.Tensor) -> None:
    out = bench_cka(real_images, resnet(7), resnet(8), batch_size=8, device="cpu")
    for key in ("minibatch_seconds", "fullgram_seconds", "minibatch_peak_rss_mb", "fullgram_peak_rss_mb"):
        assert out[f"cka.{key}"] > 0
    assert out["cka.n_images"] == 16
    assert out["cka.max_abs_diff"] < 1e-8  # the scalable path is exact for linear CKA

"""Embeddings of real pack images of two domains (liver CT, fundus) through a random ResNet-18 at 32 px:
feature extraction, domain separability, UMAP, static and interactive figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from rtl_core.analysis.embeddings import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYERS,
    domain_separability,
    encoder_features,
    extract_features,
    load_encoders,
    normalize,
    sample_tasks,
    separability_table,
    umap_frame,
)
from rtl_core.analysis.figures import (  # noqa: E402
    as_iframe,
    figures_by_init,
    interactive_embedding_html,
    thumbnail_uris,
)
from rtl_core.errors import ConfigError, DataError  # noqa: E402
from rtl_core.models.backbones import build_backbone  # noqa: E402
from rtl_core.models.checkpoints import IDENTITY_MEAN, IDENTITY_STD, save_encoder  # noqa: E402
from rtl_core.report.views.features import embedding_grid, separability_figure  # noqa: E402

TASKS = ("ct_liver_seg", "fundus_cls")


@pytest.fixture(scope="module")
def sample():
    return sample_tasks(TASKS, n_per_task=64, size=32, seed=0)


@pytest.fixture(scope="module")
def features(sample):
    torch.manual_seed(0)
    return encoder_features({"random": build_backbone("resnet18")}, sample.images)


@pytest.fixture(scope="module")
def frame(features, sample):
    return umap_frame(features, sample.meta, layers=["layer4"], n_neighbors=5, n_epochs=50)


def test_normalize_uses_imagenet_statistics():
    x = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    assert torch.allclose(normalize(x), torch.zeros(2, 3, 4, 4), atol=1e-6)
    ones = normalize(torch.ones(1, 3, 2, 2))
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(ones[0, :, 0, 0], expected)
    with pytest.raises(DataError):
        normalize(torch.ones(3, 2, 2))


def test_sample_holds_real_test_images_with_metadata(sample):
    assert sample.images.dtype == torch.uint8 and tuple(sample.images.shape) == (128, 3, 32, 32)
    meta = sample.meta
    assert meta["task"].value_counts().to_dict() == {"ct_liver_seg": 64, "fundus_cls": 64}
    assert set(meta["domain"]) == {"ct", "fundus"}
    assert meta["group"].str.startswith(tuple(f"{t}:" for t in TASKS)).all()
    is_ct = (meta["task"] == "ct_liver_seg").to_numpy()
    np.testing.assert_array_equal(sample.has_mask, is_ct)
    assert sample.masks[is_ct].reshape(64, -1).max(1).min() == 1  # every liver slice has liver pixels
    assert sample.masks[~is_ct].max() == 0
    assert set(meta.loc[is_ct, "body_region"]) == {"abdomen"}
    assert (meta.loc[~is_ct, "label"] >= 0).all() and (meta.loc[is_ct, "label"] == -1).all()


def test_features_per_layer(sample, features):
    feats = features["random"]
    widths = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
    assert list(feats) == list(LAYERS)
    for layer, x in feats.items():
        assert x.shape == (128, widths[layer]) and np.isfinite(x).all()
    torch.manual_seed(0)
    raw = extract_features(build_backbone("resnet18"), sample.images[:8], ["layer1"], normalize_input=False)
    np.testing.assert_allclose(raw["layer1"], feats["layer1"][:8], rtol=1e-4, atol=1e-5)  # default: [0, 1] as is
    torch.manual_seed(0)
    imagenet = extract_features(
        build_backbone("resnet18"), sample.images[:8], ["layer1"], stats=(IMAGENET_MEAN, IMAGENET_STD)
    )
    assert not np.allclose(imagenet["layer1"], feats["layer1"][:8])  # statistics, when given, are applied
    with pytest.raises(DataError):
        extract_features(build_backbone("resnet18"), sample.images.float(), ["layer1"])


def test_encoders_from_checkpoints_and_grey_stems(sample, features, tmp_path):
    torch.manual_seed(0)
    rgb = build_backbone("resnet18")
    save_encoder(tmp_path / "rgb", rgb, "resnet18")
    save_encoder(tmp_path / "own_stats", rgb, "resnet18", normalize={"mean": [0.5] * 3, "std": [0.25] * 3})
    save_encoder(tmp_path / "grey", build_backbone("resnet18", in_channels=1), "resnet18", in_channels=1)
    stems = {name: tmp_path / name for name in ("rgb", "own_stats", "grey")}
    encoders, stats = load_encoders(stems)
    assert stats["rgb"] == (IDENTITY_MEAN, IDENTITY_STD) and stats["own_stats"] == ((0.5,) * 3, (0.25,) * 3)
    feats = encoder_features(encoders, sample.images[:16], ["layer4"], stats=stats)
    np.testing.assert_allclose(feats["rgb"]["layer4"], features["random"]["layer4"][:16], rtol=1e-4, atol=1e-5)
    assert not np.allclose(feats["own_stats"]["layer4"], feats["rgb"]["layer4"])  # same weights, own statistics
    assert feats["grey"]["layer4"].shape == (16, 512) and np.isfinite(feats["grey"]["layer4"]).all()


def test_domain_separability_is_finite_and_meaningful(sample, features):
    table = separability_table(features, sample.meta, by="domain")
    assert len(table) == 4 * len(LAYERS)
    assert np.isfinite(table["score"]).all()
    scores = table.pivot_table(index="layer", columns="metric", values="score")
    assert (scores["chance"] == 0.5).all()
    assert (scores["knn_accuracy"] > 0.9).all()  # CT vs fundus photographs: trivially apart
    assert scores["silhouette"].between(-1, 1).all()
    # Labels unrelated to the images (one random label per patient) are not separable.
    groups = sample.meta["group"].to_numpy()
    unique = np.unique(groups)
    random_label = dict(zip(unique, np.random.default_rng(0).integers(0, 2, len(unique))))
    shuffled = domain_separability(features["random"]["layer4"], [random_label[g] for g in groups], groups)
    assert shuffled["knn_accuracy"] < 0.7
    assert shuffled["silhouette"] < scores.loc["layer4", "silhouette"]


def test_umap_frame_and_static_figures(frame, sample):
    assert len(frame) == len(sample)
    assert {"init", "layer", "x", "y", "domain", "task", "class_name", "image_index"} <= set(frame.columns)
    assert np.isfinite(frame[["x", "y"]].to_numpy()).all()
    assert frame[["x", "y"]].std().min() > 0
    fig = embedding_grid(frame, hue="domain")
    assert len(fig.axes) >= 1
    plt.close(fig)
    with pytest.raises(ConfigError, match="frame has no column 'no_such_column'"):
        embedding_grid(frame, hue="no_such_column")


def test_separability_figure(sample, features):
    fig = separability_figure(separability_table(features, sample.meta, by="task", n_splits=3))
    assert len(fig.axes) == 2
    plt.close("all")


def test_interactive_html_has_plot_and_thumbnail_hook(frame, sample):
    rows = figures_by_init(frame, "layer4")["random"]
    thumbs = thumbnail_uris(sample.images[torch.as_tensor(rows["image_index"].to_numpy(copy=True))], size=32)
    assert len(thumbs) == len(rows) and all(t.startswith("data:image/png;base64,") for t in thumbs)
    html = interactive_embedding_html(rows, thumbs, color="domain", include_plotlyjs=False)
    assert 'class="plotly-graph-div"' in html
    div = html.split('<div id="')[1].split('"')[0]
    assert div.startswith("rtl-embedding-")
    assert f'id="{div}-thumb"' in html and f'id="{div}-caption"' in html
    assert "plotly_hover" in html and f"getElementById('{div}')" in html
    assert html.count("iVBORw0KGgo") >= len(rows)  # every PNG thumbnail (plotly's JSON escapes the "/" of its URI)
    assert "fundus_cls" in html and "ct_liver_seg" in html
    assert html.startswith("<!DOCTYPE html>")
    fragment = interactive_embedding_html(rows, thumbs, color="class_name", include_plotlyjs=False, full_html=False)
    assert fragment.startswith('<div class="rtl-embedding"')
    frame_html = as_iframe(html)
    assert frame_html.startswith("<iframe srcdoc=") and "&lt;div" in frame_html
    with pytest.raises(DataError):
        interactive_embedding_html(rows, thumbs[:-1], include_plotlyjs=False)

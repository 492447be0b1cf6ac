"""Image properties on real pack images, and linear probes under patient-grouped cross-validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from rtl_core.analysis.embeddings import extract_features, sample_tasks
from rtl_core.analysis.probes import default_targets, probe_score, probe_table, probe_targets
from rtl_core.analysis.properties import PROPERTIES, body_mask, grey_values, image_properties
from rtl_core.data.registry import load_task
from rtl_core.errors import DataError
from rtl_core.models.backbones import build_backbone


@pytest.fixture(scope="module")
def liver():
    """All 139 test slices of ct_liver_seg (25 scans) at 32 px, with layer features of a random ResNet-18."""
    sample = sample_tasks(("ct_liver_seg",), n_per_task=10_000, size=32)
    torch.manual_seed(0)
    features = extract_features(build_backbone("resnet18"), sample.images)
    return sample, features


# --- properties ------------------------------------------------------------------------------------------------


def test_properties_of_real_ct_slices_match_their_definitions():
    data = load_task("ct_liver_seg").split("test")
    images, masks = data.images[:12], data.masks[:12]
    props = image_properties(images, masks)
    assert list(props.columns) == list(PROPERTIES)
    np.testing.assert_allclose(props["mean_intensity"], images.reshape(12, -1).mean(1) / 255, rtol=1e-5)
    np.testing.assert_allclose(props["contrast"], (images / 255.0).reshape(12, -1).std(1), rtol=1e-4)
    np.testing.assert_allclose(props["liver_fraction"], (masks > 0).reshape(12, -1).mean(1))
    assert props["liver_fraction"].gt(0).all()  # every slice of this set shows liver
    assert props["body_fraction"].between(0.2, 0.9).all(), props["body_fraction"].tolist()
    assert props["edge_density"].between(0.01, 0.9).all()
    assert props["high_freq_energy"].between(0, 1).all()


def test_body_mask_covers_the_liver_and_blurring_lowers_high_frequencies():
    data = load_task("ct_liver_seg").split("test")
    grey = grey_values(data.images[:8])
    for g, mask in zip(grey, data.masks[:8]):
        body = body_mask(g)
        assert (body[mask > 0]).mean() > 0.95  # the liver lies inside the body
    blurred = np.stack([ndimage.gaussian_filter(g, 1.5) for g in grey])
    sharp = image_properties(data.images[:8])["high_freq_energy"].to_numpy()
    soft = image_properties(np.round(blurred * 255).astype(np.uint8))["high_freq_energy"].to_numpy()
    assert (soft < sharp).all()


def test_properties_of_rgb_images_and_input_checks():
    data = load_task("fundus_cls").split("test")
    rgb = data.images[:5]  # (N, H, W, 3)
    chw = np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))
    a, b = image_properties(rgb), image_properties(torch.from_numpy(chw))
    np.testing.assert_allclose(a["mean_intensity"], rgb.reshape(5, -1).mean(1) / 255, rtol=1e-5)
    np.testing.assert_allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), equal_nan=True)
    assert a["liver_fraction"].isna().all()
    with pytest.raises(DataError):
        image_properties(rgb.astype(np.float32))
    with pytest.raises(DataError):
        image_properties(rgb[:, :, :, 0], masks=np.zeros((5, 3, 3), np.uint8))


# --- probes ------------------------------------------------------------------------------------------------------


def test_noise_property_is_not_predictable_under_grouped_cv(liver):
    sample, features = liver
    groups = sample.meta["group"].to_numpy()
    noise = np.random.default_rng(0).normal(size=len(sample))
    for layer, x in features.items():
        r2 = probe_score(x, noise, groups, "regression")
        assert -0.5 < r2 <= 0.05, (layer, r2)


def test_linear_function_of_features_is_recovered(liver):
    sample, features = liver
    groups = sample.meta["group"].to_numpy()
    x = features["layer1"]  # 64 features, 139 images: a linear target is identifiable
    target = x @ np.random.default_rng(1).normal(size=x.shape[1])
    assert probe_score(x, target, groups, "regression") > 0.99


def test_classification_probe_separates_a_linear_label_and_not_a_random_one(liver):
    sample, features = liver
    groups = sample.meta["group"].to_numpy()
    x = features["layer1"]
    score = x @ np.random.default_rng(2).normal(size=x.shape[1])
    linear_label = (score > np.median(score)).astype(int)
    unique = np.unique(groups)
    per_group = dict(zip(unique, np.random.default_rng(3).integers(0, 2, len(unique))))
    random_label = np.array([per_group[g] for g in groups])
    assert probe_score(x, linear_label, groups, "classification") > 0.85
    assert probe_score(x, random_label, groups, "classification") < 0.7


def test_probe_table_is_tidy_and_reads_real_properties(liver):
    sample, features = liver
    targets = probe_targets(sample)
    kinds = default_targets(targets)
    assert "dataset" not in kinds and "body_region" not in kinds  # one task, one region: nothing to classify
    assert kinds["liver_fraction"] == "regression"
    table = probe_table({"random": features}, targets, sample.meta["group"])
    assert list(table.columns[:5]) == ["init", "layer", "property", "score", "metric"]
    assert len(table) == len(kinds) * len(features)
    assert set(table["metric"]) == {"r2"}
    assert (table["n"] == len(sample)).all()
    assert np.isfinite(table["score"]).all()
    # Even random convolutions keep the mean grey value linearly readable in the first stage.
    mean_r2 = table.query("property == 'mean_intensity' and layer == 'layer1'")["score"].item()
    assert mean_r2 > 0.8


def test_probe_drops_missing_targets_and_checks_lengths(liver):
    sample, features = liver
    groups = sample.meta["group"].to_numpy()
    target = image_properties(sample.images)["mean_intensity"].to_numpy().copy()
    target[::2] = np.nan
    assert np.isfinite(probe_score(features["layer1"], target, groups))
    with pytest.raises(DataError):
        probe_score(features["layer1"], target[:-1], groups)
    with pytest.raises(DataError):
        probe_score(features["layer1"], np.zeros(len(groups)), np.zeros(len(groups)))

"""``rtl analyze`` end to end on real pack images with encoders saved as checkpoints (random weights: the
plumbing is under test here, not the science)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from rtl_core.analysis.study import analyze, load_analysis
from rtl_core.config import load_config
from rtl_core.errors import RtlError
from rtl_core.models.backbones import build_backbone
from rtl_core.models.checkpoints import save_encoder
from rtl_core.paths import encoder_stem


@pytest.mark.slow
def test_analyze_writes_every_table(tmp_path):
    config = load_config("smoke", overrides={"analysis": {"cka_images": 24, "embedding_images": 70}})
    for seed, pool in enumerate(("ct", "natural")):
        torch.manual_seed(seed + 10)
        save_encoder(
            encoder_stem(pool, "simclr", "smoke"), build_backbone("resnet18"), "resnet18", method="simclr", pool=pool
        )
    out = analyze(config, force=True)
    cka = pd.read_csv(out / "cka.csv")
    assert set(cka["inputs"]) == {"ct", "natural"}
    self_pairs = cka[(cka.model_a == cka.model_b) & (cka.layer_a == cka.layer_b)]
    assert len(self_pairs) and (abs(self_pairs["cka"] - 1) < 1e-6).all()
    assert set(cka["estimator"]) == {"debiased"}  # n (24 here) is small against up to 512 features
    cross = cka[(cka.model_a != cka.model_b)]
    assert cross["cka"].notna().all() and (cross["cka"] < 0.999).any()
    probes = pd.read_csv(out / "probes.csv")
    assert {"mean_intensity", "dataset"} <= set(probes["property"]) and set(probes["init"]) == set(
        config.evaluate.inits
    )
    separability = pd.read_csv(out / "separability.csv")
    assert separability["score"].notna().all()
    for init in config.evaluate.inits:
        html = (out / f"embedding_{init.replace(':', '_')}.html").read_text()
        assert "plotly_hover" in html
    assert (out / "done.json").is_file()
    assert set(load_analysis(config)["cka"]["inputs"]) == {"ct", "natural"}
    other = load_config("smoke", overrides={"analysis": {"cka_images": 28, "embedding_images": 70}})
    with pytest.raises(RtlError, match="No current analysis .* other settings"):
        load_analysis(other)  # another config's analysis is never shown as this one's

"""``rtl analyze`` end to end on real pack images with encoders saved as checkpoints (random weights: the
plumbing is under test here, not the science)."""

from __future__ import annotations

import pandas as pd
import torch

from rtl_core.analysis.study import analyze
from rtl_core.config import load_config
from rtl_core.models.backbones import build_backbone
from rtl_core.models.checkpoints import save_encoder
from rtl_core.paths import encoder_stem


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
    cross = cka[(cka.model_a != cka.model_b)]
    assert cross["cka"].between(0, 1).all() and (cross["cka"] < 0.999).any()
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

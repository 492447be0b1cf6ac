"""The paper profile's whole ``rtl reproduce`` at CPU scale: every code path of the authors' recipe runs in CI.

Only sizes shrink (images, pools, epochs, seeds, tasks, training subsets); everything that selects a code path
stays as the profile sets it: ResNet-50, the authors' projection head, NT-Xent in groups, the per-epoch cosine,
``lowlabel_10``, ``linear`` through the frozen encoder (``linear_on_features: false``) and ``linear_bn_train``,
the bias-free head, augmentation, LR decay, last-epoch testing, learning curves, the full 5-block decoder, the
analysis, the claims and, of the notebooks, the pages only this profile has and the summary (``PAGES``)."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml

from rtl_core.config import load_config
from rtl_core.pipeline import reproduce
from rtl_core.report.notebooks import study_pages

CPU_SCALE = {
    "profile": "paper",
    "study": "paper_cpu",
    "data": {"image_size": 32, "pool_size": 128, "num_workers": 0},
    "pretrain": {"epochs": 2, "batch_size": 64, "loss_group_size": 32, "crop_size": 32, "precision": "auto"},
    "evaluate": {
        "tasks": ["ct_cls", "ct_liver_seg"],
        "seeds": [42, 1],
        "epochs": 2,
        "linear_epochs": 2,
        "batch_size": 32,
        "max_train_images": 64,
        "precision": "auto",
    },
    "analysis": {"cka_images": 64, "embedding_images": 64},
}


#: The pages only this profile has (the frozen encoder with BatchNorm in train mode; the same source renders every
#: protocol page) and the summary with the paper's arms; the smoke and user-study tests render every other page.
PAGES = ["21_linear_bn_train", "90_summary"]


@pytest.fixture(scope="module")
def paper_cpu(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper_cpu")
    config = folder / "paper_cpu.yaml"
    config.write_text(yaml.safe_dump(CPU_SCALE))
    report_dir = folder / "reports"
    threads = torch.get_num_threads()
    figures = reproduce(config_path=str(config), report_dir=report_dir, pages=PAGES)
    assert torch.get_num_threads() == threads  # the inline grid gives the caller's thread count back
    return load_config(path=config), report_dir, figures


def test_the_cpu_scale_config_changes_sizes_only():
    paper, small = load_config("paper"), load_config("paper", overrides=CPU_SCALE)
    for section, keys in (
        (
            "pretrain",
            [
                "backbone",
                "projection_head",
                "schedule",
                "warmup_epochs",
                "optimizer",
                "lr_scaling",
                "temperature",
                "projection_dim",
                "gaussian_blur",
            ],
        ),
        (
            "evaluate",
            [
                "protocols",
                "inits",
                "selection",
                "linear_on_features",
                "head_bias",
                "linear_probe_norm",
                "augment_p",
                "lr_decay_per_epoch",
                "decoder_channels",
                "learning_curves",
                "lr",
                "linear_lr",
            ],
        ),
    ):
        for key in keys:
            assert getattr(getattr(small, section), key) == getattr(getattr(paper, section), key), f"{section}.{key}"


@pytest.mark.slow
def test_the_paper_profile_reproduces_end_to_end_at_cpu_scale(paper_cpu):
    config, report_dir, figures = paper_cpu
    assert figures["reproduce.wall_minutes"] > 0
    from rtl_core.paths import results_dir

    records = [json.loads(p.read_text()) for p in results_dir(config.study).rglob("seed*.json")]
    cells = {(r["task"], r["init"], r["protocol"]) for r in records}
    assert len(records) == 2 * 3 * 5 * 2 and len(cells) == 2 * 3 * 5  # tasks × inits × protocols × seeds
    for r in records:
        assert r["selection"] == "last" and r["selected_epoch"] == r["curves"]["epoch"][-1]
        assert None not in r["curves"][f"val_{r['primary_metric']}"]  # validated every epoch: learning curves
        assert r["curves"]["lr"][0] < 5e-4 + 1e-12 and r["curves"]["lr"][-1] < r["curves"]["lr"][0]  # ×0.97 per epoch
    from rtl_core.models.checkpoints import read_sidecar
    from rtl_core.paths import encoder_stem

    for pool in ("ct", "natural"):
        sidecar = read_sidecar(encoder_stem(pool, "simclr", config.study))
        assert sidecar["arch"] == "resnet50" and sidecar["pool"] == pool and sidecar["epochs"] == 2
    assert {spec.name for spec in study_pages(config)} >= {"21_linear_bn_train", "22_low_label_10", "23_segmentation"}
    assert sorted(p.stem for p in report_dir.glob("*.html")) == sorted([*PAGES, "index"])
    for name in PAGES:
        html = (report_dir / f"{name}.html").read_text()
        visible = re.sub(r'<script.*?</script>|srcdoc="[^"]*"', "", html, flags=re.S)
        assert "Traceback" not in visible and "Error:" not in visible, name
    summary = (report_dir / "90_summary.html").read_text()
    assert "lowlabel_10" in summary and "Claims at a glance" in summary
    claims = json.loads((report_dir / "claims.json").read_text())
    assert claims["meta"]["study"] == "paper_cpu" and claims["claims"]

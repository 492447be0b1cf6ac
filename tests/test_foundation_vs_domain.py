"""Encoders of different architectures in one study (examples/foundation_vs_domain.yaml): an ImageNet ResNet-50
(torchvision), our CT SimCLR ResNet-50 and a DINOv2-style ViT-S/14 file, each evaluated as its own architecture,
the declared questions judged; a ViT whose patch size does not divide the images is refused naming the fix. All
weights are random stand-ins written in the real layouts (no download)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch
import yaml
from safetensors.torch import save_file
from torchvision import models

from rtl_core.analysis.claims import study_claims
from rtl_core.analysis.sanity import sanity_table
from rtl_core.analysis.study import cka_layers, weight_uniqueness_table
from rtl_core.config import load_config
from rtl_core.errors import CheckpointError, ConfigError
from rtl_core.evaluate.runner import run_grid, run_one
from rtl_core.models.backbones import build_backbone
from rtl_core.models.checkpoints import save_encoder
from rtl_core.models.inits import load_init
from rtl_core.paths import encoder_stem, results_dir
from rtl_core.results import RunKey, load_records

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "foundation_vs_domain.yaml"
VIT = "file:$RTL_ENCODERS/vit_s14.safetensors"
TV = "torchvision:resnet50:IMAGENET1K_V2"
#: The smallest sizes: 28 px (2 x 2 patches of 14), one epoch, a few images, two seeds.
TINY = {
    "image_size": 28,
    "epochs": 1,
    "batch_size": 16,
    "max_train_images": 32,
    "min_steps": 0,
    "linear_epochs": 2,
    "seeds": [42, 1],
    "precise_bn": False,
    "learning_curves": False,
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _vit_file(path: Path, model: str, img_size: int) -> Path:
    """A random timm ViT's state dict (timm keys) as a .safetensors file, the layout DINOv2 / RAD-DINO ship in."""
    torch.manual_seed(3)
    vit = timm.create_model(model, pretrained=False, num_classes=0, img_size=img_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    return path


@pytest.fixture()
def study(tmp_path, monkeypatch):
    """The example at smoke size, with its three encoders stood in: ImageNet weights in the torch hub folder, our CT
    encoder as `rtl pretrain` saves it, the ViT file under $RTL_ENCODERS."""
    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("RTL_ENCODERS", str(tmp_path / "encoders"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("nothing is downloaded"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(models.resnet50(weights=None).state_dict(), hub / "resnet50-11ad3fa6.pth")  # IMAGENET1K_V2's name
    _vit_file(tmp_path / "encoders" / "vit_s14.safetensors", "vit_small_patch14_dinov2", 28)
    values = yaml.safe_load(EXAMPLE.read_text())
    values.pop("profile")
    values["data"]["image_size"] = 28
    values["pretrain"]["crop_size"] = 28
    values["evaluate"].update(TINY)
    config = load_config("smoke", overrides=values)
    torch.manual_seed(2)
    stem = encoder_stem("ct", "simclr", config.study)
    save_encoder(stem, build_backbone("resnet50"), "resnet50", method="simclr", pool="ct")
    return config


def test_example_grid_runs_each_init_as_its_own_arch_and_judges_the_questions(study, tmp_path):
    report = run_grid(study, progress=False)
    assert not report.failed and len(report.ran) == 2 * 3 * 2 * 2  # tasks x inits x protocols x seeds
    records = {(r["task"], r["init"], r["protocol"], r["seed"]): r for r in load_records(results_dir(study.study))}
    assert len(records) == 24
    vit = records["ct_cls", VIT, "linear", 42]
    assert (
        vit["arch"] == "timm:vit_small_patch14_dinov2"
        and "ViT (timm VisionTransformer keys" in vit["init_info"]["layout"]
    )
    assert vit["init_info"]["contract"]["source"].startswith("DINOv2 ViT layout")
    assert vit["init_info"]["contract"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    tv = records["ct_cls", TV, "finetune", 1]
    assert tv["arch"] == "resnet50" and tv["init_info"]["contract"]["source"].startswith("torchvision resnet50")
    ours = records["ct_contrast_cls", "ssl:ct:simclr", "linear", 1]
    assert ours["arch"] == study.pretrain.backbone == "resnet50"
    assert ours["init_info"]["contract"]["source"] == "rtl_core checkpoint sidecar"
    assert all(0 <= r["metrics"]["accuracy"] <= 1 for r in records.values())

    rows, path = study_claims(study)
    assert path.is_file()
    own = rows[rows["claim"].isin(["Q1", "Q2"])]
    cells = {(r.claim, r.task, r.protocol) for r in own.itertuples()}
    assert cells == {
        ("Q1", "ct_cls", "linear"),
        ("Q1", "ct_contrast_cls", "linear"),
        ("Q2", "ct_cls", "linear"),
        ("Q2", "ct_cls", "finetune"),
    }
    assert set(own["verdict"]) <= {"supports", "contradicts", "equivalent", "inconclusive"}, own[["claim", "reason"]]


def test_a_vit_whose_patch_does_not_divide_the_images_is_refused_with_the_fix(study, tmp_path):
    config = study.model_copy(update={"evaluate": study.evaluate.model_copy(update={"image_size": 32})})
    with pytest.raises(
        ConfigError, match=r"evaluate.image_size = 32 px is not a multiple of the patch size 14.*28 or 42"
    ):
        run_one(config, RunKey("ct_cls", VIT, "linear", 42), root=tmp_path / "results")
    # An arch declared for a file init is checked when the config is read.
    values = {"evaluate": {"image_size": 28, "init_details": {VIT: {"arch": "timm:vit_small_patch16_224"}}}}
    values["evaluate"]["inits"] = [VIT]
    with pytest.raises(ConfigError, match=r"init_details.*arch.*28 px is not a multiple of the patch size 16"):
        load_config("smoke", overrides=values)
    with pytest.raises(ConfigError, match="Unknown backbone 'vit_small'"):
        load_config("smoke", overrides={"evaluate": {"inits": [VIT], "init_details": {VIT: {"arch": "vit_small"}}}})


def test_a_vit_of_no_dinov2_size_takes_its_declared_arch(tmp_path, monkeypatch):
    monkeypatch.setenv("RTL_ENCODERS", str(tmp_path))
    _vit_file(tmp_path / "tiny.safetensors", "vit_tiny_patch16_224", 32)
    name = "file:$RTL_ENCODERS/tiny.safetensors"
    with pytest.raises(CheckpointError, match=r"names no backbone.*init_details.*arch: 'timm:<model>'"):
        load_init(name, "s", "resnet18", seed=0)
    encoder, info = load_init(name, "s", "resnet18", seed=0, details={"arch": "timm:vit_tiny_patch16_224"})
    assert info["arch"] == "timm:vit_tiny_patch16_224" and encoder(torch.rand(2, 3, 32, 32)).shape == (2, 192)
    with pytest.raises(CheckpointError, match="gives 192 features but timm:vit_small_patch16_224 gives 384"):
        load_init(name, "s", "resnet18", seed=0, details={"arch": "timm:vit_small_patch16_224"})
    _vit_file(tmp_path / "small.safetensors", "vit_small_patch14_dinov2", 28)
    with pytest.raises(CheckpointError, match="declares arch 'resnet50' but .* holds a timm:vit_small_patch14_dinov2"):
        load_init("file:$RTL_ENCODERS/small.safetensors", "s", "resnet18", seed=0, details={"arch": "resnet50"})


def test_feature_space_analysis_across_architectures(caplog):
    """Same-arch pairs compare every layer; cross-arch pairs the last ones; weight-space CKA same-arch pairs only;
    the kNN sanity check draws random inits of each encoder's own arch and leaves out one it cannot feed."""
    resnet, vit = "resnet18", "timm:vit_small_patch14_dinov2"
    assert cka_layers(resnet, resnet) == (("conv1", "layer1", "layer2", "layer3", "layer4"),) * 2
    assert cka_layers(resnet, vit) == (("layer4",), ("blocks.11",))
    torch.manual_seed(0)
    a, b = build_backbone(resnet), build_backbone(resnet)
    table = weight_uniqueness_table(
        {"a": a, "b": b, "c": build_backbone("resnet34")}, {"a": resnet, "b": resnet, "c": "resnet34"}
    )
    assert set(zip(table["init_a"], table["init_b"])) == {("a", "b")}
    encoders = {"ssl:ct:simclr": a, "file:/v16.pt": build_backbone("timm:vit_tiny_patch16_224")}
    archs = {"ssl:ct:simclr": resnet, "file:/v16.pt": "timm:vit_tiny_patch16_224"}
    with caplog.at_level(logging.WARNING):
        rows = sanity_table(encoders, archs, 28, seeds=[0], domains={"file:/v16.pt": "ct"}, reported=False)
    assert list(rows["init"]) == ["ssl:ct:simclr"] and rows.iloc[0]["task"] == "ct_cls"
    assert (
        "file:/v16.pt (timm:vit_tiny_patch16_224) left out: its patch size 16 does not divide the 28 px" in caplog.text
    )


@pytest.mark.slow  # ~100 s of CPU: kNN baselines of two architectures on three tasks, CKA, UMAP
def test_analyze_the_example_across_architectures(study):
    """`rtl analyze` on the three encoders: CKA of every layer within the ResNet-50s, last layers against the ViT;
    weight-space CKA between the ResNets only; embeddings, probes and the kNN sanity check for every encoder."""
    from rtl_core.analysis.study import analyze

    analysis = {"cka_images": 16, "embedding_images": 64, "sanity_random_seeds": 1}
    config = study.model_copy(update={"analysis": study.analysis.model_copy(update=analysis)})
    out = analyze(config, force=True)
    cka = pd.read_csv(out / "cka.csv")
    pairs = cka.groupby(["model_a", "model_b", "inputs"]).size()
    assert pairs["ssl:ct:simclr", TV, "ct"] == 25 and pairs["ssl:ct:simclr", VIT, "ct"] == 1
    vit_rows = cka[(cka.model_a == "ssl:ct:simclr") & (cka.model_b == VIT)]
    assert set(vit_rows["layer_a"]) == {"layer4"} and set(vit_rows["layer_b"]) == {"blocks.11"}
    assert pairs[VIT, VIT, "ct"] == 13 * 13  # patch embedding and 12 blocks
    uniqueness = pd.read_csv(out / "weight_uniqueness.csv")
    assert set(zip(uniqueness["init_a"], uniqueness["init_b"])) == {("ssl:ct:simclr", TV)}
    probes = pd.read_csv(out / "probes.csv")
    assert set(probes["init"]) == set(config.evaluate.inits)
    assert set(probes[probes["init"] == VIT]["layer"]) == {"blocks.2", "blocks.5", "blocks.8", "blocks.11"}
    sanity = pd.read_csv(out / "sanity.csv")
    assert set(sanity["init"]) == set(config.evaluate.inits)

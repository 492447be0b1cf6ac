"""Backbones by name through timm (``timm:<model>``): config checks, features, pretraining and evaluation."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from rtl_core.config import load_config
from rtl_core.errors import ConfigError
from rtl_core.models.backbones import build_backbone, feature_dim
from rtl_core.models.checkpoints import load_encoder, read_sidecar

VIT_TINY = "timm:vit_tiny_patch16_224"
VIT_SMALL = "timm:vit_small_patch16_224"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mini_pool(pack, tmp_path_factory) -> Path:
    """32 real images (ImageNet samples of the pack) as an ImageFolder tree."""
    root = tmp_path_factory.mktemp("timm_pool")
    with zipfile.ZipFile(pack / "natural" / "imagenet_sample_1k" / "images.zip") as archive:
        for name in sorted(archive.namelist())[:32]:
            out = root / name.split("/", 1)[1]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(archive.read(name))
    return root


def vit_config(pool: Path, backbone: str = VIT_SMALL, **evaluate):
    """The smoke profile on a 32-image pool: a timm ViT pretrained on 32 px crops, evaluated at 32 px."""
    return load_config(
        "smoke",
        overrides={
            "study": "timm_smoke",
            "data": {"image_size": 32, "pools": {"mini": {"format": "imagefolder", "path": str(pool)}}},
            "pretrain": {"pools": ["mini"], "backbone": backbone, "epochs": 1, "batch_size": 16, "crop_size": 32},
            "evaluate": {
                "inits": ["scratch", "ssl:mini:simclr"],
                "image_size": 32,
                "batch_size": 16,
                "max_train_images": 32,
                "min_steps": 0,
                "linear_epochs": 2,
                **evaluate,
            },
        },
    )


def test_a_timm_name_that_does_not_exist_names_close_matches():
    with pytest.raises(ConfigError, match=r"pretrain\.backbone.*vit_smal_patch16_224.*timm:vit_small_patch16_224"):
        load_config("smoke", overrides={"pretrain": {"backbone": "timm:vit_smal_patch16_224"}})
    with pytest.raises(ConfigError, match=r"did you mean 'timm:convnext_tiny'"):
        load_config("smoke", overrides={"pretrain": {"backbone": "convnext_tiny"}})


@pytest.mark.parametrize(
    ("evaluate", "pretrain", "where"),
    [
        ({"image_size": 24}, {"crop_size": 32}, "evaluate.image_size = 24"),
        ({"image_size": 32}, {"crop_size": 40}, "pretrain.crop_size = 40"),
    ],
)
def test_a_patch_size_that_does_not_divide_the_images_names_both_sizes_and_the_fix(evaluate, pretrain, where):
    overrides = {"pretrain": {"backbone": VIT_TINY, **pretrain}, "evaluate": evaluate}
    with pytest.raises(ConfigError, match=rf"{where} px is not a multiple of the patch size 16.*multiple of 16"):
        load_config("smoke", overrides=overrides)
    # the same sizes are fine for a CNN, and 32 px (2 x 2 patches) for the ViT
    load_config("smoke", overrides={"pretrain": {"backbone": "timm:convnext_atto", **pretrain}, "evaluate": evaluate})
    load_config(
        "smoke", overrides={"pretrain": {"backbone": VIT_TINY, "crop_size": 32}, "evaluate": {"image_size": 32}}
    )


def test_one_vit_takes_pretraining_crops_and_evaluation_images_of_other_sizes():
    torch.manual_seed(0)
    encoder = build_backbone(VIT_TINY).eval()
    assert feature_dim(VIT_TINY) == 192
    with torch.no_grad():
        for size in (16, 32, 48):
            assert encoder(torch.rand(2, 3, size, size)).shape == (2, 192)


@pytest.mark.parametrize(("arch", "width"), [("timm:convnext_atto", 320), ("timm:resnet18", 512)])
def test_timm_cnns_give_pooled_features_of_their_num_features(arch, width):
    import timm

    encoder = build_backbone(arch, in_channels=1).eval()
    assert feature_dim(arch) == width == timm.create_model(arch[5:], num_classes=0).num_features
    with torch.no_grad():
        assert encoder(torch.rand(3, 1, 32, 32)).shape == (3, width)


def test_a_convnext_tiny_builds_with_its_num_features():
    encoder = build_backbone("timm:convnext_tiny").eval()
    with torch.no_grad():
        assert encoder(torch.rand(2, 3, 32, 32)).shape == (2, feature_dim("timm:convnext_tiny")) == (2, 768)


@pytest.mark.parametrize("method", ["simclr", "dino"])
def test_a_vit_takes_one_ssl_step(method, mini_pool):
    from rtl_core.data.imagefolder import ImageFolderStream, index_image_folder
    from rtl_core.pretrain.augment import AugmentConfig, BatchAugment
    from rtl_core.pretrain.methods import MethodContext, build_method

    torch.manual_seed(0)
    backbone = build_backbone(VIT_TINY)
    context = MethodContext(feature_dim=feature_dim(VIT_TINY), batch_size=8, pool_size=32, max_steps=10)
    model = build_method(method, backbone, context)
    stream = ImageFolderStream(index_image_folder(mini_pool), size=32)
    images = torch.stack([stream[i][0] for i in range(8)])
    augment, g = BatchAugment(AugmentConfig(crop_size=32)), torch.Generator().manual_seed(0)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.before_step(0, 10)
    loss = model.loss(augment(images, g), augment(images, g))
    loss.backward()
    model.after_backward(0)
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(before[k], v) for k, v in backbone.state_dict().items())


def test_our_checkpoints_store_and_check_the_timm_arch(tmp_path):
    from rtl_core.errors import CheckpointError
    from rtl_core.models.checkpoints import save_encoder

    torch.manual_seed(1)
    encoder = build_backbone(VIT_TINY)
    save_encoder(tmp_path / "vit", encoder, VIT_TINY, method="simclr", pool="mini")
    assert read_sidecar(tmp_path / "vit")["arch"] == VIT_TINY
    loaded, _ = load_encoder(tmp_path / "vit", expect={"arch": VIT_TINY, "in_channels": 3})
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), encoder.eval()(x))
    with pytest.raises(CheckpointError, match=r"arch='timm:vit_tiny_patch16_224' but 'resnet18' was asked for"):
        load_encoder(tmp_path / "vit", expect={"arch": "resnet18"})


def test_a_vit_small_pretrains_one_smoke_epoch_and_runs_linear_and_finetune(mini_pool, tmp_path):
    from rtl_core.evaluate.runner import run_one
    from rtl_core.pretrain.train import pretrain
    from rtl_core.results import RunKey

    config = vit_config(mini_pool)
    weights = pretrain(config, "mini", "simclr", progress=False)
    sidecar = read_sidecar(weights)
    assert sidecar["arch"] == VIT_SMALL and sidecar["epochs"] == 1
    encoder, _ = load_encoder(weights, expect={"arch": VIT_SMALL})
    torch.manual_seed(config.seed)  # as pretraining seeds itself before building the encoder
    untrained = build_backbone(VIT_SMALL).state_dict()
    assert untrained.keys() == encoder.state_dict().keys()
    assert any(not torch.equal(v, untrained[k]) for k, v in encoder.state_dict().items())
    for protocol in ("linear", "finetune"):
        record = run_one(config, RunKey("mri_cls", "ssl:mini:simclr", protocol, 42), root=tmp_path / protocol)
        assert record["primary_metric"] in record["metrics"]
        assert 0.0 <= record["metrics"]["accuracy"] <= 1.0
        assert record["n_train"] == 32


def test_a_timm_cnn_segments_through_smp_with_our_weights_and_a_vit_names_what_is_supported():
    from rtl_core.evaluate.models import build_segmenter

    torch.manual_seed(2)
    encoder = build_backbone("timm:convnext_atto")
    model = build_segmenter(encoder, "timm:convnext_atto", 2, (0.0,) * 3, (1.0,) * 3, (16, 8, 8, 8, 8))
    ours, theirs = encoder.state_dict(), model.encoder.state_dict()
    assert torch.equal(theirs["model.stem_0.weight"], ours["stem.0.weight"])
    assert torch.equal(theirs["model.stages_3.blocks.1.mlp.fc2.weight"], ours["stages.3.blocks.1.mlp.fc2.weight"])
    assert len(theirs) == len(ours) - 2  # all but the head's final norm (weight, bias)
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 2, 32, 32)
    with pytest.raises(ConfigError, match=r"timm:vit_tiny_patch16_224.*timm:convnext_\*.*evaluate\.tasks"):
        build_segmenter(build_backbone(VIT_TINY), VIT_TINY, 2, (0.0,) * 3, (1.0,) * 3, (16, 8, 8, 8, 8))


def test_a_segmentation_run_with_a_timm_backbone(tmp_path):
    from rtl_core.evaluate.runner import run_one
    from rtl_core.results import RunKey

    config = load_config(
        "smoke",
        overrides={
            "pretrain": {"backbone": "timm:convnext_atto"},
            "evaluate": {"image_size": 32, "max_train_images": 16, "batch_size": 8, "epochs": 1, "min_steps": 0},
        },
    )
    record = run_one(config, RunKey("ct_liver_seg", "scratch", "finetune", 42), root=tmp_path)
    assert set(record["metrics"]) == {"dice_scan", "dice_batch"}
    assert all(0.0 <= v <= 1.0 for v in record["metrics"].values())


def test_the_analysis_reads_a_vits_blocks_by_their_tokens_and_a_convnexts_stages():
    from rtl_core.analysis.activations import ActivationRecorder
    from rtl_core.analysis.cka import layerwise_cka
    from rtl_core.errors import DataError
    from rtl_core.models.backbones import analysis_layers, stage_layers

    torch.manual_seed(3)
    vit, x = build_backbone(VIT_TINY).eval(), torch.rand(6, 3, 32, 32)
    layers = analysis_layers(VIT_TINY)
    assert layers == ("patch_embed.proj", *(f"blocks.{i}" for i in range(12)))
    assert stage_layers(VIT_TINY) == ("blocks.2", "blocks.5", "blocks.8", "blocks.11")
    with torch.no_grad(), ActivationRecorder(vit, layers) as rec:
        vit(x)
        cls = rec.pop()
    # every block as (N, D): its class token, not a mean over the feature axis
    assert {name: tuple(t.shape) for name, t in cls.items()} == {name: (6, 192) for name in layers}
    tokens = vit.forward_features(x)  # the last block's tokens after the final norm
    assert torch.allclose(vit.norm(cls["blocks.11"]), tokens[:, 0], atol=1e-5)
    with torch.no_grad(), ActivationRecorder(vit, ["blocks.11"], tokens="mean") as rec:
        vit(x)
        mean = rec.pop()["blocks.11"]
    assert mean.shape == (6, 192) and not torch.allclose(mean, cls["blocks.11"])
    with pytest.raises(DataError, match=r"'patch_embed'.*patch_embed\.proj"), ActivationRecorder(vit, ["patch_embed"]):
        vit(x)
    matrix = layerwise_cka(vit, vit, [x], layers[-2:], layers[-2:], device="cpu", progress=False)
    assert torch.allclose(torch.as_tensor(matrix).diagonal().float(), torch.ones(2), atol=1e-4)

    convnext = build_backbone("timm:convnext_atto").eval()
    assert analysis_layers("timm:convnext_atto") == ("stem", "stages.0", "stages.1", "stages.2", "stages.3")
    with torch.no_grad(), ActivationRecorder(convnext, analysis_layers("timm:convnext_atto")) as rec:
        convnext(x)
        widths = [t.shape[1] for t in rec.pop().values()]
    assert widths == [40, 40, 80, 160, 320]
    with pytest.raises(ConfigError, match=r"timm:efficientnet_b0.*does not know its layers.*ConvNeXt"):
        analysis_layers("timm:efficientnet_b0")


@pytest.mark.slow
def test_analyze_reads_a_vits_blocks(tmp_path):
    """``rtl analyze`` on a ViT study: CKA over every block, embeddings and probes on four of them, the kNN sanity
    check; the weight-space CKA (a ResNet's conv1 / layer1) is left empty, not read by names it lacks."""
    import pandas as pd

    from rtl_core.analysis.study import analyze
    from rtl_core.models.checkpoints import save_encoder
    from rtl_core.paths import encoder_stem

    overrides = {
        "study": "timm_analysis",
        "pretrain": {"backbone": VIT_TINY},
        "analysis": {"cka_images": 24, "embedding_images": 70, "sanity_random_seeds": 1},
    }
    config = load_config("smoke", overrides=overrides)
    for seed, pool in enumerate(("ct", "natural")):
        torch.manual_seed(seed + 10)
        save_encoder(encoder_stem(pool, "simclr", config.study), build_backbone(VIT_TINY), VIT_TINY, pool=pool)
    out = analyze(config, force=True)
    cka = pd.read_csv(out / "cka.csv")
    assert set(cka["layer_a"]) == {"patch_embed.proj", *(f"blocks.{i}" for i in range(12))}
    self_pairs = cka[(cka.model_a == cka.model_b) & (cka.layer_a == cka.layer_b)]
    assert len(self_pairs) and (abs(self_pairs["cka"] - 1) < 1e-6).all()
    assert set(pd.read_csv(out / "probes.csv")["layer"]) == {"blocks.2", "blocks.5", "blocks.8", "blocks.11"}
    assert pd.read_csv(out / "weight_cka.csv").empty
    assert len(pd.read_csv(out / "sanity.csv")) >= 2

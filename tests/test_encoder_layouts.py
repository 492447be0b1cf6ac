"""Layouts of the public encoders (rtl_core.models.layouts) and input contracts (rtl_core.models.contracts): each
layout loads strictly, is named in the run record and round-trips through `rtl export`; a wrong key names the
file and the fix; a task whose images do not meet an init's contract is converted exactly (and the conversion
recorded) or refused naming both sides. Weight files are small stand-ins written from randomly initialised
models in the real key names (torchvision, timm; Hugging Face's Dinov2Model keys mapped by hand)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision import models

from rtl_core.config import load_config
from rtl_core.errors import CheckpointError, ConfigError
from rtl_core.evaluate.models import input_stage
from rtl_core.evaluate.runner import run_one
from rtl_core.models.contracts import InputContract, plan_conversion
from rtl_core.models.foreign import load_file_encoder
from rtl_core.models.inits import load_init
from rtl_core.models.layouts import build_radimagenet_resnet50, build_vit
from rtl_core.results import RunKey

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY = {"image_size": 32, "epochs": 1, "batch_size": 32, "max_train_images": 48, "min_steps": 0, "linear_epochs": 2}
#: A DINOv2-style ViT, small: width 128 (2 heads of 64), depth 2, patch 14 on a 2 × 2 grid, layer scale, registers.
VIT = {"img_size": 28, "patch_size": 14, "embed_dim": 128, "depth": 2, "num_heads": 2, "init_values": 1e-5}


def _xrv_densenet() -> nn.Module:
    """``xrv.models.DenseNet``'s modules: torchvision's DenseNet-121 names, a 1-channel conv0, 18 outputs."""
    model = models.densenet121(weights=None)
    model.features.conv0 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.classifier = nn.Linear(1024, 18)
    return model


def _xrv_resnet() -> nn.Module:
    """``xrv.models.ResNet``'s ``self.model``: torchvision's ResNet-50 with a 1-channel conv1."""
    model = models.resnet50(weights=None)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.fc = nn.Linear(2048, 18)
    return model


def _hf_keys(vit: nn.Module) -> dict[str, torch.Tensor]:
    """timm ViT → Hugging Face ``Dinov2Model`` key names (transformers' modeling_dinov2: embeddings.*,
    encoder.layer.N.attention.attention.{query,key,value}, layer_scale1.lambda1, layernorm)."""
    out = {}
    for key, value in vit.state_dict().items():
        parts = key.split(".")
        if key == "cls_token":
            out["embeddings.cls_token"] = value
        elif key == "reg_token":
            out["embeddings.register_tokens"] = value
        elif key == "pos_embed":
            out["embeddings.position_embeddings"] = value
        elif key.startswith("patch_embed.proj."):
            out[f"embeddings.patch_embeddings.projection.{parts[-1]}"] = value
        elif key.startswith("norm."):
            out[f"layernorm.{parts[-1]}"] = value
        elif key.startswith("blocks."):
            block, inner = parts[1], ".".join(parts[2:])
            base = f"encoder.layer.{block}"
            if inner.startswith("attn.qkv."):
                for name, chunk in zip(("query", "key", "value"), value.chunk(3, 0)):
                    out[f"{base}.attention.attention.{name}.{parts[-1]}"] = chunk
            elif inner.startswith("attn.proj."):
                out[f"{base}.attention.output.dense.{parts[-1]}"] = value
            elif inner in ("ls1.gamma", "ls2.gamma"):
                out[f"{base}.layer_scale{inner[2]}.lambda1"] = value
            else:
                out[f"{base}.{inner}"] = value
    out["embeddings.mask_token"] = torch.zeros(1, vit.embed_dim)
    return out


def _vit(registers: int = 0) -> nn.Module:
    torch.manual_seed(5)
    return build_vit({**VIT, "reg_tokens": registers}).eval()


def _layouts(tmp: Path) -> dict[str, tuple[Path, nn.Module, str, str, tuple[int, int]]]:
    """name → (file, the model it came from, expected layout text, study arch, input (channels, size))."""
    torch.manual_seed(3)
    out = {}
    dn = _xrv_densenet()
    torch.save({**dn.state_dict(), "op_threshs": torch.rand(18)}, tmp / "xrv_densenet.pt")
    out["xrv densenet"] = (tmp / "xrv_densenet.pt", dn, "TorchXRayVision DenseNet-121", "timm:densenet121", (1, 64))
    rn = _xrv_resnet()
    state = {**{f"model.{k}": v for k, v in rn.state_dict().items()}, "op_threshs": torch.rand(18)}
    torch.save(state, tmp / "xrv_resnet.pt")
    out["xrv resnet"] = (tmp / "xrv_resnet.pt", rn, "TorchXRayVision ResNet", "resnet50", (1, 64))
    rad = build_radimagenet_resnet50()
    torch.save(rad.state_dict(), tmp / "RadImageNet-ResNet50_notop.pth")
    out["radimagenet"] = (tmp / "RadImageNet-ResNet50_notop.pth", rad, "RadImageNet ResNet-50", "resnet50", (3, 64))
    simclr = models.resnet18(weights=None)
    lightly = {f"backbone.{k}": v for k, v in simclr.state_dict().items() if not k.startswith("fc.")}
    lightly.update({"projection_head.layers.0.weight": torch.randn(8, 512)})
    torch.save({"state_dict": lightly, "epoch": 3}, tmp / "simclr.ckpt")
    out["lightly"] = (tmp / "simclr.ckpt", simclr, "Lightning/lightly checkpoint", "resnet18", (3, 32))
    vit = _vit(registers=4)
    state = {k: v.contiguous() for k, v in vit.state_dict().items()}
    save_file({**state, "mask_token": torch.zeros(1, 128)}, str(tmp / "dinov2_timm.safetensors"))
    arch = "vit(width=128,depth=2,patch=14)"
    out["timm vit"] = (tmp / "dinov2_timm.safetensors", vit, "timm VisionTransformer keys", arch, (3, 28))
    dino = {
        **{f"{part}.{k}": v for part in ("student_backbone", "teacher_backbone") for k, v in vit.state_dict().items()},
        **{f"{part}.layers.0.weight": torch.randn(8, 128) for part in ("student_head", "teacher_head")},
    }
    torch.save({"state_dict": dino, "epoch": 1}, tmp / "lightly_dino.ckpt")
    out["lightly dino vit"] = (tmp / "lightly_dino.ckpt", vit, "under 'student_backbone.'", arch, (3, 28))
    hf = _vit()
    save_file({k: v.contiguous() for k, v in _hf_keys(hf).items()}, str(tmp / "rad_dino.safetensors"))
    out["hf vit"] = (tmp / "rad_dino.safetensors", hf, "Hugging Face Dinov2Model keys", arch, (3, 28))
    return out


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    return _layouts(tmp_path_factory.mktemp("layouts"))


def _features(model: nn.Module, shape: tuple[int, int]) -> torch.Tensor:
    torch.manual_seed(0)
    channels, size = shape
    x = torch.rand(2, channels, size, size)
    if isinstance(model, models.ResNet) and isinstance(model.fc, nn.Linear):
        model = nn.Sequential(*list(model.children())[:-1], nn.Flatten())
    if isinstance(model, models.DenseNet) and isinstance(model.classifier, nn.Linear):
        head = model.classifier
        model.classifier = nn.Identity()
        try:
            return model.eval()(x)
        finally:
            model.classifier = head
    return model.eval()(x)


@pytest.mark.parametrize(
    "name", ["xrv densenet", "xrv resnet", "radimagenet", "lightly", "timm vit", "lightly dino vit", "hf vit"]
)
def test_each_layout_loads_strictly_is_named_and_round_trips_through_export(name, layouts, tmp_path):
    from rtl_core.report.export import WEIGHTS_NAME, export_encoder

    path, source, text, arch, shape = layouts[name]
    encoder, info = load_init(f"file:{path}", "smoke", arch, seed=0)
    assert text in info["layout"]
    with torch.no_grad():
        assert torch.allclose(_features(encoder, shape), _features(source, shape), atol=1e-5)
    assert info["contract"]["channels"] == shape[0]
    out = export_encoder(load_config("smoke"), f"file:{path}", tmp_path / "export")
    back, back_info = load_init(f"file:{out / WEIGHTS_NAME}", "smoke", arch, seed=0)
    assert back.state_dict().keys() == encoder.state_dict().keys()
    assert all(torch.equal(back.state_dict()[k], v) for k, v in encoder.state_dict().items())
    assert {k: v for k, v in back_info["contract"].items() if k != "source"} == {
        k: v for k, v in info["contract"].items() if k != "source"
    }
    assert "safetensors" in back_info["layout"] and back_info["checkpoint"] == str(out / WEIGHTS_NAME)


def test_layout_contracts(layouts):
    _, info = load_init(f"file:{layouts['xrv densenet'][0]}", "smoke", "timm:densenet121", seed=0)
    assert info["contract"]["value_range"] == [-1024.0, 1024.0] and info["mean"] == (0.0,)
    _, info = load_init(f"file:{layouts['hf vit'][0]}", "smoke", "vit(width=128,depth=2,patch=14)", seed=0)
    assert info["mean"] == pytest.approx((0.485, 0.456, 0.406)) and info["contract"]["value_range"] == [0.0, 1.0]
    details = {"mean": [0.53], "std": [0.26], "channels": 3}  # RAD-DINO's own statistics, declared
    _, info = load_init(f"file:{layouts['hf vit'][0]}", "smoke", "vit(width=128,depth=2,patch=14)", 0, details)
    assert info["mean"] == (0.53,) and "init_details" in info["contract"]["source"]
    rad = build_radimagenet_resnet50()
    assert rad.layer2[0].conv1.stride == (2, 2) and rad.layer2[0].conv2.stride == (1, 1)  # Keras' ResNet50


def test_a_wrong_key_names_the_file_and_the_fix(layouts, tmp_path):
    state = torch.load(layouts["xrv densenet"][0], weights_only=True)
    state["features.denseblock1.denselayer1.conv9.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad_densenet.pt")
    with pytest.raises(CheckpointError, match=r"bad_densenet\.pt.*unexpected keys.*conv9.*fix the file"):
        load_file_encoder(tmp_path / "bad_densenet.pt", "timm:densenet121")
    hf = _hf_keys(_vit())
    hf["encoder.layer.0.mlp.weights_in.weight"] = torch.zeros(4, 4)  # SwiGLU (ViT-g): no timm rule here
    save_file({k: v.contiguous() for k, v in hf.items()}, str(tmp_path / "swiglu.safetensors"))
    with pytest.raises(CheckpointError, match=r"swiglu\.safetensors.*weights_in.*convert"):
        load_file_encoder(tmp_path / "swiglu.safetensors", None)
    rad = build_radimagenet_resnet50().state_dict()
    del rad["layer3.0.conv2.bias"]
    torch.save(rad, tmp_path / "rad_missing.pt")
    with pytest.raises(CheckpointError, match=r"rad_missing\.pt.*missing keys.*layer3\.0\.conv2\.bias"):
        load_file_encoder(tmp_path / "rad_missing.pt", "resnet50")
    with pytest.raises(CheckpointError, match="timm:densenet121 encoder.*pretrain.backbone: timm:densenet121"):
        load_file_encoder(layouts["xrv densenet"][0], "resnet50")


def _task(images: torch.Tensor, name: str = "toy") -> SimpleNamespace:
    split = SimpleNamespace(images=images)
    return SimpleNamespace(name=name, train=split, val=split, test=split)


def test_contract_conversions_are_exact_or_refused_naming_both_sides():
    grey = torch.rand(4, 1, 8, 8).expand(-1, 3, -1, -1).contiguous()
    xrv = InputContract(channels=1, value_range=(-1024.0, 1024.0), mean=(0.0,), std=(1.0,), source="xrv")
    info = {"init": "file:xrv.pt", "contract": xrv.as_dict()}
    stage = input_stage(info, _task(grey))
    assert info["input_conversion"] == [
        "grey 3 channels -> 1 channel (the first of three equal channels)",
        "values [0, 1] -> [-1024, 1024] (x * 2048 + -1024)",
    ]
    assert torch.allclose(stage(grey), grey[:, :1] * 2048 - 1024)
    colour = torch.rand(4, 3, 8, 8)
    with pytest.raises(ConfigError, match=r"'file:xrv\.pt' takes 1-channel.*task 'natural_cls' has colour"):
        input_stage({"init": "file:xrv.pt", "contract": xrv.as_dict()}, _task(colour, "natural_cls"))
    three = InputContract(mean=(0.5,) * 3, std=(0.25,) * 3)
    stage, done = plan_conversion(three, 1, True, "file:rgb.pt", "toy")
    one = torch.rand(2, 1, 4, 4)
    assert done == ["grey 1 channel -> 3 channels (repeated)"] and torch.allclose(
        stage(one), (one.repeat(1, 3, 1, 1) - 0.5) / 0.25
    )
    with pytest.raises(ConfigError, match=r"task 'ct_hu' gives values in \[-1024.0, 3071.0\].*init 'file:xrv\.pt'"):
        plan_conversion(xrv, 3, True, "file:xrv.pt", "ct_hu", value_range=(-1024, 3071))
    with pytest.raises(ConfigError, match="mean has 3 values for a 1-channel encoder.*init_details"):
        InputContract(channels=1, mean=(0.5, 0.5, 0.5), std=(1.0,))
    same, none = plan_conversion(three, 3, False, "torchvision:resnet18:IMAGENET1K_V1", "natural_cls")
    assert none == [] and torch.allclose(same(colour), (colour - 0.5) / 0.25)


def test_a_run_records_the_contract_and_its_conversions(tmp_path):
    """A 1-channel [-1024, 1024] (TorchXRayVision-style) ResNet-18 on a grey task: converted and recorded; on
    the colour task: refused naming both."""
    torch.manual_seed(1)
    model = models.resnet18(weights=None)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    torch.save({f"model.{k}": v for k, v in model.state_dict().items()}, tmp_path / "xrv18.pt")
    init = f"file:{tmp_path / 'xrv18.pt'}"
    config = load_config("smoke", overrides={"evaluate": {**TINY, "inits": ["scratch", init]}})
    record = run_one(config, RunKey("mri_cls", init, "linear", 42), root=tmp_path / "results")
    info = record["init_info"]
    assert info["contract"]["channels"] == 1 and info["contract"]["value_range"] == [-1024.0, 1024.0]
    assert info["input_conversion"] == [
        "grey 3 channels -> 1 channel (the first of three equal channels)",
        "values [0, 1] -> [-1024, 1024] (x * 2048 + -1024)",
    ]
    assert "TorchXRayVision" in info["layout"] and 0 <= record["metrics"]["accuracy"] <= 1
    scratch = run_one(config, RunKey("mri_cls", "scratch", "linear", 42), root=tmp_path / "results")
    assert scratch["init_info"]["input_conversion"] == [] and scratch["init_info"]["contract"]["channels"] == 3
    with pytest.raises(ConfigError, match=r"takes 1-channel.*task 'natural_cls' has colour"):
        run_one(config, RunKey("natural_cls", init, "linear", 42), root=tmp_path / "results")


def test_public_encoders_run_in_the_grid_on_their_timm_backbones(layouts, tmp_path):
    """TorchXRayVision's DenseNet-121 on `timm:densenet121` (its contract converts the grey task) and a
    Hugging Face DINOv2 ViT-S/14 (RAD-DINO's layout) on `timm:vit_small_patch14_dinov2`, one linear run each."""
    torch.manual_seed(2)
    vit = build_vit(
        {"img_size": 224, "patch_size": 14, "embed_dim": 384, "depth": 12, "num_heads": 6, "init_values": 1}
    )
    save_file({k: v.contiguous() for k, v in _hf_keys(vit).items()}, str(tmp_path / "rad_dino.safetensors"))
    cases = {
        "timm:densenet121": (f"file:{layouts['xrv densenet'][0]}", 32, "TorchXRayVision DenseNet-121", 2),
        "timm:vit_small_patch14_dinov2": (f"file:{tmp_path / 'rad_dino.safetensors'}", 28, "Dinov2Model", 0),
    }
    for backbone, (init, size, layout, conversions) in cases.items():
        config = load_config(
            "smoke",
            overrides={
                "evaluate": {**TINY, "image_size": size, "inits": ["scratch", init]},
                "pretrain": {"backbone": backbone, "crop_size": size},
            },
        )
        record = run_one(config, RunKey("mri_cls", init, "linear", 42), root=tmp_path / "results")
        assert record["arch"] == backbone and layout in record["init_info"]["layout"]
        assert len(record["init_info"]["input_conversion"]) == conversions
        assert 0 <= record["metrics"]["accuracy"] <= 1


def test_a_file_inits_contract_is_declared_in_init_details(tmp_path):
    torch.save(models.resnet18(weights=None).state_dict(), tmp_path / "keras_like.pt")
    init = f"file:{tmp_path / 'keras_like.pt'}"
    declared = {"value_range": [0, 255], "mean": [120.0], "std": [60.0], "window": [40, 400]}
    config = load_config(
        "smoke", overrides={"evaluate": {"inits": ["scratch", init], "init_details": {init: declared}}}
    )
    details = config.evaluate.init_details[init].model_dump()
    _, info = load_init(init, "smoke", "resnet18", seed=0, details=details)
    assert info["contract"]["value_range"] == [0.0, 255.0] and info["contract"]["window"] == [40.0, 400.0]
    grey = torch.rand(2, 1, 4, 4).expand(-1, 3, -1, -1)
    stage = input_stage(info, _task(grey))
    assert info["input_conversion"] == ["values [0, 1] -> [0, 255] (x * 255 + 0)"]
    assert torch.allclose(stage(grey), (grey * 255 - 120) / 60)
    with pytest.raises(ConfigError, match="channels"):
        load_config(
            "smoke", overrides={"evaluate": {"inits": ["scratch", init], "init_details": {init: {"channels": 2}}}}
        )


def test_the_analysis_leaves_out_an_encoder_whose_contract_it_cannot_apply(tmp_path, caplog):
    """The feature-space analysis feeds 3-channel [0, 1] images: a 1-channel [-1024, 1024] encoder is left out with
    the reason logged, never fed inputs it would silently misread."""
    from rtl_core.analysis.study import study_encoders
    from rtl_core.models.contracts import unconverted_inputs

    xrv = InputContract(channels=1, value_range=(-1024.0, 1024.0), mean=(0.0,), std=(1.0,)).as_dict()
    assert unconverted_inputs(xrv) == "1 channel, values in [-1024, 1024]"
    assert unconverted_inputs(InputContract(mean=(0.5,) * 3, std=(0.2,) * 3).as_dict()) is None
    model = models.resnet18(weights=None)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    torch.save({f"model.{k}": v for k, v in model.state_dict().items()}, tmp_path / "xrv18.pt")
    init = f"file:{tmp_path / 'xrv18.pt'}"
    config = load_config("smoke", overrides={"evaluate": {"inits": ["scratch", init]}})
    with caplog.at_level("WARNING"):
        encoders, stats, archs = study_encoders(config)
    assert set(encoders) == set(stats) == set(archs) == {"scratch"}
    assert f"leaves out {init}: its input contract (1 channel, values in [-1024, 1024])" in caplog.text

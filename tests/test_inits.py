"""Encoders from outside the study (rtl_core.models.foreign, rtl_core.models.inits) and `rtl export`: every
weight-file layout loads strictly, bad files fail naming the keys, torchvision weights are read offline from the
hub folder, and an exported encoder reads back bit for bit. Weight files are written from randomly initialised
torchvision models (no download)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from torchvision import models

from rtl_core.analysis.claims import study_arms
from rtl_core.config import load_config
from rtl_core.errors import CheckpointError, ConfigError
from rtl_core.evaluate.runner import run_one
from rtl_core.models.backbones import build_backbone
from rtl_core.models.checkpoints import save_encoder
from rtl_core.models.foreign import infer_arch, read_encoder_state
from rtl_core.models.inits import load_init
from rtl_core.names import init_slug, parse_init
from rtl_core.paths import encoder_stem
from rtl_core.results import RunKey

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY = {"image_size": 16, "epochs": 1, "batch_size": 32, "max_train_images": 48, "min_steps": 0, "linear_epochs": 2}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """A torchvision ResNet-18's state dict (with its fc), randomly initialised."""
    torch.manual_seed(7)
    return models.resnet18(weights=None).state_dict()


def _encoder_keys(state):
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _layouts(state) -> dict[str, tuple[object, str]]:
    enc = _encoder_keys(state)
    head = {"weight": torch.randn(6, 512), "bias": torch.zeros(6)}
    return {
        "plain torchvision": (state, "plain torchvision state dict; dropped: fc"),
        "paper encoder_pretrained.tar": (enc, "plain torchvision state dict"),
        "paper fine-tuned classifier": (
            {**{f"encoder.{k}": v for k, v in enc.items()}, **{f"head.{k}": v for k, v in head.items()}},
            "under 'encoder.'; dropped: head",
        ),
        "paper fine-tuned U-Net": (
            {
                **{f"unet.backbone.{k}": v for k, v in enc.items()},
                "unet.decoder.blocks.0.conv1.0.weight": torch.randn(8, 8, 3, 3),
                "unet.segmentation_head.0.weight": torch.randn(2, 8, 3, 3),
            },
            "under 'unet.backbone.'; dropped: unet.decoder, unet.segmentation_head",
        ),
        "DDP": ({f"module.{k}": v for k, v in state.items()}, "'module.' prefix removed"),
        "Lightning (rtl_core)": (
            {
                "state_dict": {
                    **{f"method.backbone.{k}": v for k, v in enc.items()},
                    **{f"method.backbone_momentum.{k}": v for k, v in enc.items()},
                    "method.head.layers.0.weight": torch.randn(4, 512),
                },
                "epoch": 3,
                "global_step": 30,
            },
            "Lightning/lightly checkpoint",
        ),
        "lightly": (
            {
                "state_dict": {
                    **{f"backbone.{k}": v for k, v in enc.items()},
                    "projection_head.layers.0.weight": torch.randn(4, 512),
                }
            },
            "under 'backbone.'; dropped: projection_head",
        ),
    }


@pytest.mark.parametrize("name", list(_layouts({"fc.weight": torch.zeros(1)}).keys()))
def test_every_known_layout_loads_strictly_and_is_reported(name, source, tmp_path):
    obj, expected = _layouts(source)[name]
    path = tmp_path / "weights.pt"
    torch.save(obj, path)
    encoder, info = load_init(f"file:{path}", "smoke", "resnet18", seed=0)
    got = encoder.state_dict()
    assert set(got) == set(_encoder_keys(source))
    assert all(torch.equal(got[k], v) for k, v in _encoder_keys(source).items())
    assert expected in info["layout"] and info["checkpoint"] == str(path.resolve())


def test_safetensors_files_load(source, tmp_path):
    path = tmp_path / "encoder.safetensors"
    save_file({f"backbone.{k}": v.contiguous() for k, v in _encoder_keys(source).items()}, str(path))
    encoder, info = load_init(f"file:{path}", "smoke", "resnet18", seed=0)
    assert info["layout"].startswith("safetensors") and torch.equal(encoder.conv1.weight, source["conv1.weight"])


def test_a_missing_layer_an_unknown_key_and_the_wrong_architecture_are_named(source, tmp_path):
    missing = {k: v for k, v in source.items() if not k.startswith("layer4.1.conv2")}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \['layer4.1.conv2.weight'\]"):
        load_init(f"file:{tmp_path / 'missing.pt'}", "smoke", "resnet18", seed=0)
    torch.save({**source, "extra_head.weight": torch.randn(3, 512)}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"unexpected keys \['extra_head.weight'\]"):
        load_init(f"file:{tmp_path / 'extra.pt'}", "smoke", "resnet18", seed=0)
    torch.save({"backbone." + k: v for k, v in source.items()} | {"stray.bias": torch.zeros(2)}, tmp_path / "stray.pt")
    with pytest.raises(CheckpointError, match=r"no rule drops: \['stray.bias'\]"):
        load_init(f"file:{tmp_path / 'stray.pt'}", "smoke", "resnet18", seed=0)
    torch.save(models.resnet34(weights=None).state_dict(), tmp_path / "r34.pt")
    encoder, info = load_init(f"file:{tmp_path / 'r34.pt'}", "smoke", "resnet18", seed=0)  # its own architecture
    assert info["arch"] == "resnet34" and len(encoder.layer3) == 6
    with pytest.raises(CheckpointError, match="declares arch 'resnet18' but .* holds a resnet34.*set it to 'resnet34'"):
        load_init(f"file:{tmp_path / 'r34.pt'}", "smoke", "resnet18", seed=0, details={"arch": "resnet18"})
    torch.save(models.resnet18(weights=None), tmp_path / "pickled.pt")  # a whole module: needs pickles
    with pytest.raises(CheckpointError, match="refuses.*Convert it once"):
        load_init(f"file:{tmp_path / 'pickled.pt'}", "smoke", "resnet18", seed=0)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_init(f"file:{tmp_path / 'nowhere.pt'}", "smoke", "resnet18", seed=0)


def test_random_bytes_and_a_cut_off_file_are_named_as_such_not_as_pickles(source, tmp_path):
    import numpy as np

    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(3).bytes(4096))
    assert noise.read_bytes()[:1] != b"\x80"  # not by chance a pickle's first byte
    with pytest.raises(CheckpointError, match=r"noise.pt cannot be loaded: it is not a PyTorch checkpoint") as error:
        load_init(f"file:{noise}", "smoke", "resnet18", seed=0)
    assert "pickles" not in str(error.value)
    whole = tmp_path / "whole.pt"
    torch.save(source, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut.pt cannot be loaded: it is truncated"):
        load_init(f"file:{cut}", "smoke", "resnet18", seed=0)
    empty = tmp_path / "empty.pt"
    empty.touch()
    with pytest.raises(CheckpointError, match=r"empty.pt cannot be loaded: it is empty \(0 bytes\)"):
        load_init(f"file:{empty}", "smoke", "resnet18", seed=0)
    # one of the study's own encoders, cut off
    stem = encoder_stem("ct", "simclr", "damaged_study")
    save_encoder(stem, build_backbone("resnet18"), "resnet18")
    weights = stem.with_suffix(".pt")
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"ct-simclr.pt cannot be read: it is truncated.*rerun pretraining"):
        load_init("ssl:ct:simclr", "damaged_study", "resnet18", seed=0)


def test_an_output_folder_that_cannot_be_written_is_named_with_the_fix(tmp_path, monkeypatch):
    from rtl_core.errors import OutputError
    from rtl_core.paths import output_root

    a_file = tmp_path / "artifacts"
    a_file.write_text("not a folder")
    for value in (a_file, a_file / "below"):
        monkeypatch.setenv("RTL_OUTPUT_DIR", str(value))
        with pytest.raises(OutputError, match=f"RTL_OUTPUT_DIR {value} cannot be a folder: {a_file} is an existing"):
            output_root()
    # read-only for every user, root included: sysfs lets no one create a folder in it or write into one of its own
    monkeypatch.setenv("RTL_OUTPUT_DIR", "/sys/rtl_core_outputs")
    with pytest.raises(OutputError, match="RTL_OUTPUT_DIR /sys/rtl_core_outputs cannot be created.*export RTL_OUTPUT"):
        output_root()
    monkeypatch.setenv("RTL_OUTPUT_DIR", "/sys/kernel")
    with pytest.raises(OutputError, match=r"RTL_OUTPUT_DIR /sys/kernel cannot be written .*chmod u\+w /sys/kernel"):
        output_root()


def test_old_files_without_batchnorm_step_counters_load(source, tmp_path):
    """Files saved before PyTorch 0.4.1 (torchvision's older ImageNet weights) lack num_batches_tracked."""
    old = {k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    encoder, _ = load_init(f"file:{tmp_path / 'old.pth'}", "smoke", "resnet18", seed=0)
    assert torch.equal(encoder.bn1.running_var, source["bn1.running_var"])


def test_a_heartbeat_slower_than_the_stale_limit_is_refused():
    with pytest.raises(ConfigError, match="heartbeat_seconds .* at most a third of stale_seconds"):
        load_config("smoke", overrides={"launcher": {"stale_seconds": 20, "heartbeat_seconds": 30}})


def test_architecture_is_inferred_from_the_keys():
    assert infer_arch(models.resnet18(weights=None).state_dict()) == "resnet18"
    assert infer_arch(models.resnet34(weights=None).state_dict()) == "resnet34"
    assert infer_arch(models.resnet50(weights=None).state_dict()) == "resnet50"


def _torch_home(tmp_path, monkeypatch, state=None) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    if state is not None:
        torch.save(state, folder / "resnet18-f37072fd.pth")  # IMAGENET1K_V1's file name
    return folder


def test_torchvision_weights_are_read_from_the_hub_folder_with_their_preprocessing(source, tmp_path, monkeypatch):
    _torch_home(tmp_path, monkeypatch, source)
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("no download when present"))
    encoder, info = load_init("torchvision:resnet18:IMAGENET1K_V1", "smoke", "resnet18", seed=0)
    assert torch.equal(encoder.layer4[1].conv2.weight, source["layer4.1.conv2.weight"])
    assert info["mean"] == pytest.approx((0.485, 0.456, 0.406)) and info["std"] == pytest.approx((0.229, 0.224, 0.225))
    assert info["domain"] == "natural" and "torchvision" in info["label"]


def test_torchvision_offline_names_the_file_and_the_folder(tmp_path, monkeypatch):
    folder = _torch_home(tmp_path, monkeypatch)

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(CheckpointError, match=rf"resnet18-f37072fd.pth .*not in {folder}.*Place the file"):
        load_init("torchvision:resnet18:IMAGENET1K_V1", "smoke", "resnet18", seed=0)
    with pytest.raises(CheckpointError, match="unknown weights.*IMAGENET1K_V1"):
        load_init("torchvision:resnet18:IMAGENET9K", "smoke", "resnet18", seed=0)


def test_one_grammar_for_inits_in_the_config():
    with pytest.raises(ConfigError, match="torchvision:<arch>:<WEIGHTS>"):
        load_config("smoke", overrides={"evaluate": {"inits": ["imagenet"]}})
    with pytest.raises(ConfigError, match="init_details"):
        load_config("smoke", overrides={"evaluate": {"init_details": {"ssl:ct:mae": {"label": "x"}}}})
    with pytest.raises(ConfigError, match="names pool 'radnet'"):
        load_config("smoke", overrides={"evaluate": {"inits": ["ssl:radnet:simclr"]}})
    assert parse_init("file:/a/b:c.pt").path == "/a/b:c.pt"
    assert init_slug("file:/x/one/encoder.pt") != init_slug("file:/x/two/encoder.pt")


def _example(name: str, **evaluate) -> dict:
    values = yaml.safe_load((EXAMPLES / name).read_text())
    values.setdefault("evaluate", {}).update({**TINY, **evaluate})
    return values


def test_readme_example_torchvision_init_runs(source, tmp_path, monkeypatch):
    _torch_home(tmp_path, monkeypatch, source)
    values = _example("torchvision_init.yaml")
    config = load_config(values.pop("profile"), overrides={**values, "profile": "smoke"})
    init = "torchvision:resnet18:IMAGENET1K_V1"
    record = run_one(config, RunKey("mri_cls", init, "linear", 42), root=tmp_path / "results")
    assert record["init_info"]["label"] == "ImageNet supervised (torchvision)"
    assert record["init_info"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert 0 <= record["metrics"]["accuracy"] <= 1
    arms = study_arms(["scratch", init], domains={init: "natural"})
    assert arms["natural"] == init


def test_readme_example_paper_encoders_run(tmp_path, monkeypatch):
    """The paper's published encoders are ResNet-50 state dicts without fc, saved as encoder_pretrained.tar."""
    monkeypatch.setenv("RTL_ENCODERS", str(tmp_path / "encoders"))
    for seed, name in enumerate(("radnet_1.28m", "radnet_12m", "imagenet")):
        torch.manual_seed(seed)
        folder = tmp_path / "encoders" / name
        folder.mkdir(parents=True)
        torch.save(_encoder_keys(models.resnet50(weights=None).state_dict()), folder / "encoder_pretrained.tar")
    values = _example("paper_encoders.yaml", image_size=32)
    config = load_config("smoke", overrides={**values, "profile": "smoke", "pretrain": {"backbone": "resnet50"}})
    init = config.evaluate.inits[1]
    record = run_one(config, RunKey("mri_cls", init, "linear", 42), root=tmp_path / "results")
    assert record["init_info"]["label"] == "RadNet-1.28M (paper)" and record["init_info"]["domain"] == "ct"
    assert "plain torchvision state dict" in record["init_info"]["layout"]
    assert record["arch"] == "resnet50"


def test_export_round_trip_and_model_card(tmp_path):
    from rtl_core.report.export import WEIGHTS_NAME, export_encoder

    torch.manual_seed(11)
    encoder = build_backbone("resnet18")
    save_encoder(
        encoder_stem("ct", "simclr", "smoke"),
        encoder,
        "resnet18",
        method="simclr",
        pool="ct",
        profile="smoke",
        epochs=1,
    )
    out = export_encoder(load_config("smoke"), "ssl:ct:simclr", tmp_path / "export")
    card = (out / "README.md").read_text()
    for needle in (
        "simclr",
        "ct/covid_ct_cvt",
        "CC BY-NC-SA",
        "How to load it",
        "file:/path/to/encoder.safetensors",
        "data_fingerprint",
    ):
        assert needle in card, needle
    back, info = load_init(f"file:{out / WEIGHTS_NAME}", "smoke", "resnet18", seed=0)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in encoder.state_dict().items())
    assert info["mean"] == (0.0, 0.0, 0.0) and info["sidecar"]["pool"] == "ct"
    plain = models.resnet18(weights=None)  # the card's plain-torchvision recipe
    plain.fc = torch.nn.Identity()
    plain.load_state_dict(load_file(str(out / WEIGHTS_NAME)), strict=True)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(plain.eval()(x), encoder.eval()(x))
    state, layout, meta = read_encoder_state(out / WEIGHTS_NAME)
    assert meta["arch"] == "resnet18" and layout.startswith("safetensors")
    with pytest.raises(ConfigError, match="not one of this study's pretrained encoders"):
        export_encoder(load_config("smoke"), "torchvision:resnet18:IMAGENET1K_V1")


# --------------------------------------------------------------------------------------------- studies
def test_a_named_study_keeps_every_artifact_under_its_name(tmp_path):
    from rtl_core.paths import output_root, results_dir
    from rtl_core.pipeline import report_dir_of

    config_file = tmp_path / "my.yaml"
    config_file.write_text("profile: smoke\nstudy: my_liver_study\nevaluate: {epochs: 1}\n")
    config = load_config(None, config_file)
    assert (config.profile, config.study) == ("smoke", "my_liver_study")
    assert load_config("smoke").study == "smoke"
    record = run_one(
        load_config(None, config_file, overrides={"evaluate": TINY}), RunKey("mri_cls", "scratch", "finetune", 42)
    )
    assert record["study"] == "my_liver_study"
    assert (results_dir("my_liver_study") / "mri_cls" / "scratch" / "finetune" / "seed42.json").is_file()
    assert not (output_root() / "results" / "smoke" / "mri_cls" / "scratch" / "finetune" / "seed42.json").exists()
    assert encoder_stem("ct", "simclr", config.study).parent.name == "my_liver_study"
    assert report_dir_of(config).name == "my_liver_study" and report_dir_of(load_config("smoke")).name == "reports"
    with pytest.raises(ConfigError, match="output_dir was removed.*RTL_OUTPUT_DIR"):
        load_config("smoke", overrides={"output_dir": "/tmp/x"})
    with pytest.raises(ConfigError, match="study"):
        load_config("smoke", overrides={"study": "../escape"})


def test_the_config_files_profile_wins_unless_the_command_names_one():
    from rtl_core.cli import main

    seen = {}

    def fake(profile, config_path, show_code=False, pages=None):
        seen.update(profile=profile, config=config_path, pages=pages)

    import rtl_core.pipeline.run as pipeline

    original = pipeline.reproduce
    pipeline.reproduce = fake
    try:
        main(["reproduce", "--config", "my.yaml"])
        assert seen == {"profile": None, "config": "my.yaml", "pages": None}
        main(["reproduce", "--config", "my.yaml", "--profile", "smoke", "--pages", "90_summary"])
        assert seen == {"profile": "smoke", "config": "my.yaml", "pages": ["90_summary"]}
    finally:
        pipeline.reproduce = original


def test_written_files_get_the_usual_mode(tmp_path):
    import os

    from rtl_core.io import write_json

    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "report.json", {"a": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644

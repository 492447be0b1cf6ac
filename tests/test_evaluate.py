"""Downstream evaluation on the real data pack at tiny sizes: subsets, leakage, inits, protocols, segmentation."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from rtl_core.config import load_config
from rtl_core.errors import CheckpointError
from rtl_core.evaluate import data as eval_data
from rtl_core.evaluate.data import load_task_data
from rtl_core.evaluate.models import Classifier, build_segmenter, freeze_encoder, set_train_mode
from rtl_core.evaluate.protocols import get_protocol
from rtl_core.evaluate.runner import run_grid, run_one
from rtl_core.models.backbones import build_backbone
from rtl_core.models.checkpoints import save_encoder
from rtl_core.models.inits import load_init
from rtl_core.names import parse_init
from rtl_core.paths import encoder_stem
from rtl_core.results import RunKey

TINY = {"image_size": 16, "epochs": 1, "batch_size": 32, "max_train_images": 48, "min_steps": 0, "linear_epochs": 2}


def tiny_config(**evaluate):
    return load_config("smoke", overrides={"evaluate": {**TINY, **evaluate}})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def ct_checkpoint():
    """A randomly initialised encoder saved as the smoke profile's ``ssl:ct:simclr`` checkpoint (until pretraining
    lands)."""
    torch.manual_seed(123)
    encoder = build_backbone("resnet18")
    save_encoder(
        encoder_stem("ct", "simclr", "smoke"), encoder, "resnet18", method="simclr", pool="ct", profile="smoke"
    )
    return encoder


def test_lowlabel_subsets_are_nested_per_seed_and_the_cap_is_fixed():
    task = load_task_data("mri_cls", 16)
    one, ten = get_protocol("lowlabel_1"), get_protocol("lowlabel_10")
    for seed in (42, 1):
        small, large = task.train_indices(one, seed), task.train_indices(ten, seed)
        assert set(small) < set(large)
        assert len(small) == pytest.approx(0.01 * len(task.train), abs=4)
        assert set(np.unique(task.train.targets[small].numpy())) == set(range(task.num_classes))
    assert set(task.train_indices(one, 42)) != set(task.train_indices(one, 1))
    full = get_protocol("finetune")
    capped = task.train_indices(full, 42, max_train=100)
    assert len(capped) == 100 and np.array_equal(capped, task.train_indices(full, 1, max_train=100))
    assert len(task.train_indices(full, 42)) == len(task.train)


def _hashes(images: torch.Tensor) -> set[str]:
    return {hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in images}


def test_no_test_or_val_image_reaches_training(monkeypatch, tmp_path):
    """Hash what the run's train loader really yields and compare with the test and validation splits."""
    seen: list[torch.Tensor] = []
    original = eval_data.BatchLoader.__iter__

    def recording_iter(self):
        for x, y in original(self):
            if x.ndim == 4:  # image batches (not cached features)
                seen.append((x * 255).round().to(torch.uint8))
            yield x, y

    monkeypatch.setattr(eval_data.BatchLoader, "__iter__", recording_iter)
    config = tiny_config(max_train_images=300, epochs=1)
    run_one(config, RunKey("mri_cls", "scratch", "finetune", 42), root=tmp_path)
    task = load_task_data("mri_cls", 16)
    trained = _hashes(torch.cat(seen))
    assert trained == _hashes(task.train.images[task.train_indices(get_protocol("finetune"), 42, 300)])
    assert not trained & _hashes(task.test.images)
    assert not trained & _hashes(task.val.images)


def test_missing_checkpoint_names_the_pretrain_command(tmp_path):
    config = tiny_config(inits=["scratch", "ssl:natural:byol"])
    with pytest.raises(CheckpointError, match=r"rtl pretrain --profile smoke --pool natural --method byol`"):
        run_grid(config, tasks=["mri_cls"], protocols=["linear"], seeds=[42], root=tmp_path, progress=False)
    assert not list(tmp_path.rglob("*.json"))  # failed before any run
    with pytest.raises(CheckpointError, match="rtl pretrain --profile smoke --pool ct --method simclr --sequential"):
        load_init("sequential:ct:simclr", "smoke", "resnet18", 0)


def test_init_loads_the_checkpoint_weights(ct_checkpoint):
    encoder, info = load_init("ssl:ct:simclr", "smoke", "resnet18", seed=0)
    assert torch.equal(encoder.conv1.weight, ct_checkpoint.conv1.weight)
    assert info["checkpoint"].endswith("ct-simclr.pt")
    scratch_a, _ = load_init("scratch", "smoke", "resnet18", seed=5)
    scratch_b, _ = load_init("scratch", "smoke", "resnet18", seed=5)
    assert torch.equal(scratch_a.layer4[1].conv2.weight, scratch_b.layer4[1].conv2.weight)
    assert parse_init("sequential:ct:simclr").stem("smoke").name == "natural_then_ct-simclr"


def test_segmentation_unet_gets_our_encoder_weights(ct_checkpoint):
    encoder, info = load_init("ssl:ct:simclr", "smoke", "resnet18", seed=0)
    model = build_segmenter(encoder, "resnet18", 2, info["mean"], info["std"], (32, 16, 16, 8, 8))
    ours = ct_checkpoint.state_dict()
    theirs = model.unet.encoder.state_dict()
    assert torch.equal(theirs["layer3.1.conv2.weight"], ours["layer3.1.conv2.weight"])
    assert torch.equal(theirs["bn1.running_var"], ours["bn1.running_var"])
    assert all(torch.equal(theirs[k], v) for k, v in ours.items())
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 2, 32, 32)


def test_linear_keeps_bn_statistics_and_bn_train_updates_them():
    x = torch.rand(8, 3, 16, 16)
    for name, should_change in (("linear", False), ("linear_bn_train", True), ("finetune", True)):
        torch.manual_seed(0)
        model = Classifier(build_backbone("resnet18"), 512, 3, (0.5,) * 3, (0.25,) * 3, probe=name != "finetune")
        protocol = get_protocol(name)
        freeze_encoder(model, protocol)
        before = model.encoder.bn1.running_mean.clone()
        set_train_mode(model, protocol)
        model(x)
        changed = not torch.equal(before, model.encoder.bn1.running_mean)
        assert changed == should_change, name
        assert all(p.requires_grad != protocol.frozen_encoder for p in model.encoder.parameters())


def test_segmentation_run_reports_both_dice_variants(ct_checkpoint, tmp_path):
    config = tiny_config(image_size=32, max_train_images=16, batch_size=8, decoder_channels=[16, 8, 8, 8, 8])
    record = run_one(config, RunKey("ct_liver_seg", "ssl:ct:simclr", "linear", 42), root=tmp_path)
    assert set(record["metrics"]) == {"dice_scan", "dice_batch"}
    assert all(0.0 <= v <= 1.0 for v in record["metrics"].values())
    assert record["n_train"] == 16 and record["n_test_scans"] > 1
    assert record["primary_metric"] == "dice_scan"


def test_every_linear_protocol_trains_its_head_with_the_linear_settings(tmp_path):
    """linear (cached features), linear through the frozen encoder, and linear_bn_train all use linear_epochs /
    linear_lr; only the fine-tunes use epochs / lr (one set of head hyper-parameters per protocol family)."""
    config = tiny_config(epochs=1, linear_epochs=3, max_train_images=48)
    uncached = tiny_config(epochs=1, linear_epochs=3, max_train_images=48, linear_on_features=False)
    epochs = {}
    for label, cfg, protocol in (
        ("cached", config, "linear"),
        ("uncached", uncached, "linear"),
        ("bn_train", config, "linear_bn_train"),
        ("finetune", config, "finetune"),
    ):
        record = run_one(cfg, RunKey("mri_cls", "scratch", protocol, 42), root=tmp_path / label)
        epochs[label] = len(record["curves"]["epoch"])
    assert epochs == {"cached": 3, "uncached": 3, "bn_train": 3, "finetune": 1}


def test_finetunes_keep_the_early_filters_of_every_seed(tmp_path):
    from rtl_core.evaluate.runner import KEPT_PREFIXES
    from rtl_core.paths import output_root

    config = tiny_config()
    for seed in (42, 1):
        run_one(config, RunKey("mri_cls", "scratch", "finetune", seed), root=tmp_path)
    kept = sorted((output_root() / "finetuned" / "smoke" / "scratch" / "mri_cls").glob("seed*.pt"))
    assert [p.name for p in kept] == ["seed1.pt", "seed42.pt"]
    state = torch.load(kept[0], weights_only=True)
    assert {"conv1.weight", "layer1.0.conv1.weight", "layer1.0.conv2.weight"} <= set(state)
    assert all(k.startswith(KEPT_PREFIXES) for k in state) and kept[0].stat().st_size < 2_000_000


def test_bf16_forward_matches_float32_within_bf16_rounding():
    """The compute plan's bf16 path (channels_last, tiny-map stages in fp32) computes the same function as fp32."""
    from rtl_core.evaluate.compute import ComputePlan

    torch.manual_seed(0)
    x = torch.rand(8, 3, 32, 32)
    cpu = torch.device("cpu")
    outputs = {}
    for precision in ("32", "bf16"):
        torch.manual_seed(1)
        encoder = build_backbone("resnet18")
        clf = Classifier(encoder, 512, 4, (0.5,) * 3, (0.25,) * 3, probe=True).eval()
        plan = ComputePlan(cpu, precision, channels_last=precision == "bf16", fused_optimizer=True)
        clf = plan.prepare(clf, encoder, 32)
        torch.manual_seed(2)
        seg = build_segmenter(
            build_backbone("resnet18"), "resnet18", 2, (0.5,) * 3, (0.25,) * 3, (32, 16, 16, 8, 8)
        ).eval()
        seg = plan.prepare(seg, seg.encoder, 32)
        with torch.no_grad(), plan.autocast():
            outputs[precision] = (clf.features(plan.inputs(x)).float(), seg(plan.inputs(x)).float())
    for fp32, bf16 in zip(outputs["32"], outputs["bf16"]):
        assert bf16.dtype == torch.float32 and torch.isfinite(bf16).all()
        relative = (bf16 - fp32).norm() / fp32.norm()
        assert 0 < relative < 0.03, relative  # bf16 has 8 mantissa bits: ~0.4 % per op; 0 would mean bf16 never ran


@pytest.mark.parametrize("task,protocol", [("ct_liver_seg", "finetune"), ("ct_cls", "linear")])
def test_bf16_and_float32_runs_agree_on_a_fixed_seed(task, protocol, tmp_path):
    """Same seed, same data: the primary metric of a bf16 run is within AGREEMENT_TOLERANCE of the fp32 run's, the
    record says which precision ran, and the two never share a settings hash."""
    from rtl_core.evaluate.compute import AGREEMENT_TOLERANCE

    records = {}
    for precision in ("32", "bf16"):
        config = tiny_config(image_size=32, epochs=2, max_train_images=128, linear_epochs=10, precision=precision)
        records[precision] = run_one(config, RunKey(task, "scratch", protocol, 42), root=tmp_path / precision)
    fp32, bf16 = records["32"], records["bf16"]
    assert (fp32["precision"], bf16["precision"]) == ("32", "bf16")
    assert fp32["settings_hash"] != bf16["settings_hash"]
    metric = fp32["primary_metric"]
    assert abs(bf16["metrics"][metric] - fp32["metrics"][metric]) <= AGREEMENT_TOLERANCE, (
        fp32["metrics"],
        bf16["metrics"],
    )


def test_a_channels_last_checkpoint_loads_as_float32_nchw_weights(tmp_path, monkeypatch):
    """Checkpoints load onto a meta-device model with assign=True: what the file holds must not leak into the model."""
    from rtl_core.models.checkpoints import load_encoder

    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    encoder = build_backbone("resnet18").to(memory_format=torch.channels_last)
    stem = encoder_stem("ct", "simclr", "layout")
    save_encoder(stem, encoder, "resnet18", method="simclr", pool="ct", profile="layout")
    loaded, _ = load_encoder(stem)
    weight = loaded.conv1.weight
    assert weight.dtype == torch.float32 and weight.is_contiguous() and weight.device.type == "cpu"
    assert torch.equal(weight, encoder.conv1.weight.detach()) and weight.requires_grad


def test_downstream_augmentation_moves_image_and_mask_together():
    """Crop/flip (rtl_core.evaluate.augment) on real liver slices: the mask, carried as an extra image channel through
    the bilinear image path, lands where the nearest-sampled mask lands; labels keep their values; seeded."""
    from rtl_core.evaluate.augment import CropFlip
    from rtl_core.evaluate.data import BatchLoader, as_float

    task = load_task_data("ct_liver_seg", 64)
    pick = np.flatnonzero((task.train.targets.flatten(1) > 0).float().mean(1).numpy() > 0.05)[:16]
    images, masks = as_float(task.train.images[pick]), task.train.targets[pick].long()
    stacked = torch.cat([images, masks[:, None].float()], dim=1)
    augment = CropFlip(p=1.0, min_scale=0.3)
    out, out_masks = augment(stacked, masks, torch.Generator().manual_seed(0))
    assert out.shape == stacked.shape and out_masks.shape == masks.shape and out_masks.dtype == masks.dtype
    assert set(out_masks.unique().tolist()) <= set(masks.unique().tolist())
    agree = ((out[:, 3] > 0.5).long() == out_masks).float().mean()
    assert agree > 0.97, f"mask and image disagree on {1 - agree:.1%} of pixels"
    assert not torch.equal(out[:, :3], images)  # something moved
    again, _ = augment(stacked, masks, torch.Generator().manual_seed(0))
    assert torch.equal(again, out)  # the same seed, the same crops
    # p = 0 leaves a batch as it is; class labels pass through unchanged
    assert augment.__class__(p=0.0)(images, masks, torch.Generator())[0] is images
    labels = torch.arange(len(images))
    assert torch.equal(augment(images, labels, torch.Generator().manual_seed(1))[1], labels)
    # the loader keeps its batch order whether or not it augments (labels batch by batch)
    cls = load_task_data("ct_cls", 32)
    plain = list(BatchLoader(cls.train, np.arange(64), 16, seed=3))
    augmented = list(BatchLoader(cls.train, np.arange(64), 16, seed=3, augment=augment))
    assert len(plain) == len(augmented) == 4
    for (x0, y0), (x1, y1) in zip(plain, augmented):
        assert torch.equal(y0, y1) and x0.shape == x1.shape and not torch.equal(x0, x1)


def test_a_flip_is_a_mirror_and_a_full_crop_is_the_identity():
    from rtl_core.evaluate.augment import CropFlip

    task = load_task_data("ct_cls", 32)
    images = task.train.images[:6].float() / 255
    g = torch.Generator().manual_seed(0)
    grid = CropFlip(p=1.0, min_scale=1.0, ratio=(1.0, 1.0)).grids(6, 32, 32, g)
    flipped = torch.nn.functional.grid_sample(images, grid, align_corners=False)
    assert torch.allclose(flipped, images.flip(-1), atol=1e-5)
    with pytest.raises(ValueError, match="augment_p"):
        CropFlip(p=1.5)


def test_warm_up_and_per_epoch_decay_shape_the_learning_rate():
    """fit's schedule: a linear ramp over warmup_epochs, then × decay_per_epoch after each epoch (the authors' 0.97)."""
    from rtl_core.evaluate.compute import ComputePlan
    from rtl_core.evaluate.context import FitSpec, RunContext
    from rtl_core.evaluate.train import fit

    plan = ComputePlan(torch.device("cpu"), "32", channels_last=False, fused_optimizer=False)
    torch.manual_seed(0)
    x, y = torch.randn(40, 5), torch.randint(0, 2, (40,))
    loader = [(x[i : i + 10], y[i : i + 10]) for i in range(0, 40, 10)]  # 4 steps per epoch
    model = torch.nn.Linear(5, 2)

    def run(**schedule):
        ctx = RunContext(plan, seed=0, arch="resnet18", init_info={})
        spec = FitSpec(**{"epochs": 3, "lr": 0.1, "batch_size": 10, **schedule})
        result = fit(
            model,
            list(model.parameters()),
            loader,
            spec,
            ctx,
            train_mode=model.train,
            validate=lambda: {"accuracy": 0.5},
            primary="accuracy",
        )
        assert ctx.timer.model_seconds > 0  # the run's timer saw every step
        return result.curves

    assert run()["lr"] == pytest.approx([0.1, 0.1, 0.1])
    assert run(decay_per_epoch=0.5)["lr"] == pytest.approx([0.05, 0.025, 0.0125])
    # two warm-up epochs of 4 steps: after epoch 1 the ramp is at step 5 of 8; full rate from epoch 2 on
    assert run(warmup_epochs=2)["lr"] == pytest.approx([0.1 * 5 / 8, 0.1, 0.1])
    curves = run(validate_every_epoch=True)
    assert curves["val_accuracy"] == [0.5, 0.5, 0.5]  # learning curves: validated after every epoch
    assert run(epochs=1, min_steps=9)["epoch"] == [1, 2, 3]  # 9 steps at 4 per epoch: 3 epochs


def test_a_fit_spec_comes_from_the_config_and_is_frozen():
    """FitSpec.from_config: fine-tunes (and segmentation decoders) train epochs at lr, a frozen encoder's linear head
    linear_epochs at linear_lr; everything else is the same config's, and augment_p 0 means no augmentation."""
    import dataclasses

    from rtl_core.evaluate.augment import CropFlip
    from rtl_core.evaluate.context import FitSpec

    cfg = tiny_config(
        epochs=3,
        lr=0.002,
        linear_epochs=7,
        linear_lr=0.03,
        augment_p=0.4,
        warmup_epochs=0.5,
        min_steps=5,
        lr_decay_per_epoch=0.97,
        selection="best_val",
        learning_curves=True,
        weight_decay=0.01,
    ).evaluate
    tune, head = FitSpec.from_config(cfg), FitSpec.from_config(cfg, linear_head=True)
    assert (tune.epochs, tune.lr, head.epochs, head.lr) == (3, 0.002, 7, 0.03)
    assert dataclasses.replace(head, epochs=3, lr=0.002) == tune
    assert tune == FitSpec(
        epochs=3,
        lr=0.002,
        batch_size=32,
        weight_decay=0.01,
        min_steps=5,
        warmup_epochs=0.5,
        decay_per_epoch=0.97,
        selection="best_val",
        validate_every_epoch=True,
        augment=CropFlip(0.4, cfg.augment_min_scale),
    )
    assert FitSpec.from_config(tiny_config(augment_p=0.0).evaluate).augment is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        tune.epochs = 4  # type: ignore[misc]


def test_precise_batchnorm_re_estimates_the_statistics_of_the_training_images():
    """recompute_batchnorm: the running mean of the first BatchNorm becomes the batch mean of conv1's output on the
    given images (exactly, with one batch), flags and momenta come back; a frozen encoder is never recalibrated."""
    from rtl_core.evaluate.classification import batchnorm_calibration
    from rtl_core.evaluate.compute import ComputePlan
    from rtl_core.evaluate.context import RunContext
    from rtl_core.evaluate.data import calibration_batches
    from rtl_core.evaluate.models import recompute_batchnorm

    task = load_task_data("ct_cls", 32)
    torch.manual_seed(0)
    model = build_backbone("resnet18").eval()
    model.bn1.running_mean.fill_(5.0)  # stale statistics, as after a few fast-moving fine-tuning steps
    images = calibration_batches(task.train, np.arange(64), 64, limit=64)
    assert len(images) == 1 and images[0].shape == (64, 3, 32, 32)
    assert recompute_batchnorm(model, images) == 20  # ResNet-18's BatchNorm layers
    expected = model.conv1(images[0]).mean(dim=(0, 2, 3))
    torch.testing.assert_close(model.bn1.running_mean, expected, rtol=1e-4, atol=1e-5)
    assert not model.training and not model.bn1.training and model.bn1.momentum == 0.1
    plan = ComputePlan(torch.device("cpu"), "32", channels_last=False, fused_optimizer=False)
    cfg = tiny_config(precise_bn=True).evaluate
    clf = Classifier(model, 512, 2, (0.0,) * 3, (1.0,) * 3)
    before = clf.encoder.bn1.running_mean.clone()
    ctx = RunContext(plan, seed=0, arch="resnet18", init_info={})
    batchnorm_calibration(clf, task, np.arange(64), get_protocol("linear"), cfg, ctx)()
    assert torch.equal(clf.encoder.bn1.running_mean, before)  # frozen: the protocol's statistics stay
    clf.encoder.bn1.running_mean.fill_(5.0)
    batchnorm_calibration(clf, task, np.arange(64), get_protocol("finetune"), cfg, ctx)()
    assert clf.encoder.bn1.running_mean.abs().max() < 5.0

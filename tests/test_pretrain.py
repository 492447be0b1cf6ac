"""SSL pretraining: distributed loss, every method, resume after a kill, checkpoints, early errors.

Training tests use a pool of 64 real ImageNet sample images (from the data pack) as a user image folder at 16 px.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from rtl_core.config import load_config
from rtl_core.errors import BusyError, CheckpointError, ConfigError
from rtl_core.leases import lease_path
from rtl_core.models.backbones import build_backbone
from rtl_core.models.checkpoints import load_encoder, read_sidecar, torch_file_problem
from rtl_core.paths import REPO_ROOT, pretraining_logs_dir
from rtl_core.pretrain import precision
from rtl_core.pretrain.augment import AugmentConfig, BatchAugment, is_grey
from rtl_core.pretrain.cli import add_pretrain_parser
from rtl_core.pretrain.knn import knn_accuracy
from rtl_core.pretrain.methods import METHODS, MethodContext, build_method
from rtl_core.pretrain.module import scaled_lr
from rtl_core.pretrain.precision import float32_stages, prepare_for_device, resolve_precision
from rtl_core.pretrain.train import plan_devices, pretrain, pretraining_dir


@pytest.fixture(scope="module")
def mini_pool(pack, tmp_path_factory) -> Path:
    """64 real images (ImageNet samples of the pack) as an ImageFolder tree."""
    root = tmp_path_factory.mktemp("mini_pool")
    with zipfile.ZipFile(pack / "natural" / "imagenet_sample_1k" / "images.zip") as archive:
        for name in sorted(archive.namelist())[:64]:
            out = root / name.split("/", 1)[1]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(archive.read(name))
    return root


def mini_values(pool: Path, **pretrain) -> dict:
    return {
        "study": "smoke",  # as load_config("smoke") names it; a config file without `study:` is named after itself
        "seed": 7,
        "data": {"image_size": 16, "pools": {"mini": {"format": "imagefolder", "path": str(pool)}}},
        "pretrain": {"pools": ["mini"], "epochs": 3, "batch_size": 16, "crop_size": 16, "warmup_epochs": 1, **pretrain},
    }


def mini_config(pool: Path, **pretrain):
    return load_config("smoke", overrides=mini_values(pool, **pretrain))


def real_batch(pool: Path, n: int = 8, size: int = 32) -> torch.Tensor:
    from rtl_core.data.imagefolder import ImageFolderStream, index_image_folder

    stream = ImageFolderStream(index_image_folder(pool), size=size)
    return torch.stack([stream[i][0] for i in range(n)])


# --- precision and layout per device --------------------------------------------------------------------------


def test_cpu_precision_plan(monkeypatch):
    assert (float32_stages(16), float32_stages(32), float32_stages(64)) == (["layer3", "layer4"], ["layer4"], [])
    assert resolve_precision("32", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "32-true"
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16-mixed"


@pytest.mark.parametrize("crop", [16, 32])
def test_cpu_bf16_plan_keeps_tiny_maps_in_float32_and_gradients_sound(mini_pool, crop):
    """bf16 on CPU: early stages in bf16 + channels_last, tiny-map stages in fp32; gradients finite and aligned
    with fp32 (oneDNN's bf16 stride-2 convolution onto 1x1 maps gives inf gradients in channels_last)."""
    images = real_batch(mini_pool, n=32, size=crop).float() / 255
    torch.manual_seed(0)
    reference = build_backbone("resnet18")
    mixed = build_backbone("resnet18")
    mixed.load_state_dict(reference.state_dict())
    keys = list(mixed.state_dict())
    config = load_config("smoke", overrides={"pretrain": {"crop_size": crop}}).pretrain
    prepare_for_device(mixed, mixed, config, "cpu", "bf16-mixed")
    assert list(mixed.state_dict()) == keys
    assert mixed.conv1.weight.is_contiguous(memory_format=torch.channels_last)

    dtypes = {}
    for name in ("layer1", "layer3", "layer4"):
        getattr(mixed, name).register_forward_hook(lambda m, i, out, name=name: dtypes.__setitem__(name, out.dtype))
    (reference(images) ** 2).mean().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = mixed(images.contiguous(memory_format=torch.channels_last))
    (features.float() ** 2).mean().backward()
    tiny = set(float32_stages(crop))
    assert dtypes == {name: torch.float32 if name in tiny else torch.bfloat16 for name in dtypes}
    grads = dict(reference.named_parameters())
    for name, param in mixed.named_parameters():
        if param.ndim == 4:
            assert torch.isfinite(param.grad).all(), name
            cosine = torch.nn.functional.cosine_similarity(param.grad.flatten(), grads[name].grad.flatten(), dim=0)
            assert cosine > 0.8, f"{name}: bf16 gradient cosine {cosine:.3f} to fp32"


def test_gpu_benchmark_counts_resnet50_flops_and_runs_on_cpu(mini_pool):
    """The paper-profile GPU benchmark's step, run on CPU at 32 px: ResNet-50 training costs ~3x its forward
    (4.09 GMAC at 224 px, so 2 x 3 x 2 x 4.09e9 / 49 FLOP per pair at 32 px); MFU needs a GPU."""
    from rtl_core.bench.gpu_pretrain_bench import measure, peak_tflops, run

    config = load_config(
        "paper", overrides={"data": {"image_size": 32}, "pretrain": {"crop_size": 32, "precision": "32"}}
    )
    result = measure(config, device="cpu", batch_per_device=8, warmup=1, steps=1, images=real_batch(mini_pool, n=16))
    expected = 2 * 3 * 2 * 4.09 / 49
    assert 0.9 * expected < result["gflops_per_pair"] < 1.15 * expected
    assert result["pairs_per_s"] > 0 and result["mfu"] is None and result["backbone"] == "resnet50"
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.4 and peak_tflops("Some other GPU") is None
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="needs a CUDA GPU"):
            run()


# --- distributed SimCLR loss ------------------------------------------------------------------------------------


def _ddp_worker(rank: int, world: int, rendezvous: str, z0: torch.Tensor, z1: torch.Tensor, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        n = len(z0) // world
        for gather in (True, False):
            method = build_method(
                "simclr", torch.nn.Identity(), MethodContext(feature_dim=4, gather_distributed=gather)
            )
            loss = method.criterion(z0[rank * n : (rank + 1) * n], z1[rank * n : (rank + 1) * n])
            torch.save(loss.detach(), f"{out}.{gather}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_loss_matches_single_process(tmp_path):
    """Gathered negatives: the mean of the ranks' losses is the one-process loss on the whole batch; local
    negatives (the paper's): each rank's loss is the loss of its own half alone."""
    from lightly.loss import NTXentLoss

    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    out = str(tmp_path / "loss")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "rdv"), z0, z1, out), nprocs=2, join=True)
    gathered = [torch.load(f"{out}.True.{r}", weights_only=True) for r in range(2)]
    local = [torch.load(f"{out}.False.{r}", weights_only=True) for r in range(2)]
    single = NTXentLoss(temperature=0.5)
    torch.testing.assert_close(sum(gathered) / 2, single(z0, z1))
    assert not torch.allclose(gathered[0], single(z0[:4], z1[:4]))  # negatives did cross processes
    torch.testing.assert_close(local[0], single(z0[:4], z1[:4]))
    torch.testing.assert_close(local[1], single(z0[4:], z1[4:]))


# --- methods and augmentation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_takes_one_step(name, mini_pool):
    torch.manual_seed(0)
    backbone = build_backbone("resnet18")
    method = build_method(name, backbone, MethodContext(feature_dim=512, batch_size=8, pool_size=64, max_steps=10))
    augment = BatchAugment(AugmentConfig(crop_size=32))
    images, g = real_batch(mini_pool), torch.Generator().manual_seed(0)
    before = {k: v.clone() for k, v in backbone.state_dict().items() if v.is_floating_point()}
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    method.before_step(0, 10)
    loss = method.loss(augment(images, g), augment(images, g))
    loss.backward()
    method.after_backward(0)
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(before[k], v) for k, v in backbone.state_dict().items() if k in before)


def test_augmentations_are_drawn_per_image_and_keep_grey_images_grey(mini_pool):
    images = real_batch(mini_pool, n=4)
    batch = torch.cat([images[:1].repeat(4, 1, 1, 1), images[1:2].mean(1, keepdim=True).repeat(4, 3, 1, 1)])
    augment = BatchAugment(AugmentConfig(crop_size=16))
    views = augment(batch, torch.Generator().manual_seed(1))
    assert views.shape == (8, 3, 16, 16) and views.min() >= 0 and views.max() <= 1
    assert not torch.allclose(views[0], views[1])  # same image, different draws
    assert is_grey(views[4:]).all()  # grey inputs: no colour jitter
    again = augment(batch, torch.Generator().manual_seed(1))
    torch.testing.assert_close(views, again)  # the generator alone fixes the draws


def test_the_authors_projection_head_and_negatives_in_groups():
    """projection_head="jonske": Linear-ReLU-Linear-Sigmoid-Linear, no bias, no BN. loss_group_size: NT-Xent within
    groups of pairs, so moving a pair to another group changes the loss and reordering inside a group does not."""
    from rtl_core.pretrain.methods import SimCLR

    ctx = MethodContext(feature_dim=512, projection_dim=64, projection_head="jonske", batch_size=8, loss_group_size=4)
    method = SimCLR(build_backbone("resnet18"), ctx)
    layers = list(method.head)
    assert [type(m).__name__ for m in layers] == ["Linear", "ReLU", "Linear", "Sigmoid", "Linear"]
    assert all(m.bias is None for m in layers if isinstance(m, torch.nn.Linear)) and layers[-1].out_features == 64
    torch.manual_seed(0)
    z0, z1 = torch.randn(8, 16), torch.randn(8, 16)
    z1[:4] += 3 * z0[:4]  # the first group's pairs agree, the second group's do not
    criterion = method.criterion

    def grouped(a, b):
        return torch.stack([criterion(x, y) for x, y in zip(a.split(4), b.split(4))]).mean()

    method._both = lambda *_: (z0, z1)
    loss = method.loss(None, None)
    assert loss == pytest.approx(float(grouped(z0, z1)))
    assert loss != pytest.approx(float(criterion(z0, z1)))  # not the whole batch's NT-Xent
    inside = torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])
    method._both = lambda *_: (z0[inside], z1[inside])
    assert method.loss(None, None) == pytest.approx(float(loss))
    across = torch.tensor([0, 1, 2, 4, 3, 5, 6, 7])
    method._both = lambda *_: (z0[across], z1[across])
    assert method.loss(None, None) != pytest.approx(float(loss))
    with pytest.raises(ConfigError, match="loss_group_size"):
        SimCLR(build_backbone("resnet18"), MethodContext(feature_dim=512, batch_size=6, loss_group_size=4))


def test_an_epoch_schedule_steps_once_per_epoch_without_warm_up(mini_pool):
    from rtl_core.pretrain.module import PretrainModule

    config = mini_config(mini_pool, schedule="epoch", warmup_epochs=0, epochs=4)
    module = PretrainModule(
        build_method("simclr", build_backbone("resnet18"), MethodContext(feature_dim=512)), config.pretrain, seed=0
    )
    module.trainer = type("T", (), {"max_epochs": 4, "estimated_stepping_batches": 40})()  # read by the schedule
    found = module.configure_optimizers()
    schedule = found["lr_scheduler"]["scheduler"]
    assert found["lr_scheduler"]["interval"] == "epoch"
    factors = [schedule.lr_lambdas[0](epoch) for epoch in range(5)]
    assert (
        factors[0] == 1.0 and factors[-1] == pytest.approx(0.0, abs=1e-9) and factors == sorted(factors, reverse=True)
    )


def test_knn_finds_an_image_itself(mini_pool):
    from torch.utils.data import TensorDataset

    images = real_batch(mini_pool, n=32, size=16)
    labels = torch.arange(32)
    data = TensorDataset(images, labels)
    assert knn_accuracy(torch.nn.Flatten(), data, data, k=1) == 1.0


def test_paper_profile_settings():
    config = load_config("paper")
    p = config.pretrain
    assert (p.backbone, p.crop_size, p.temperature, p.projection_dim, p.batch_size, p.epochs) == (
        "resnet50",
        256,
        0.5,
        256,
        4096,
        100,
    )
    assert (p.optimizer, p.lr_scaling, p.gaussian_blur, p.gather_distributed) == ("lars", "sqrt", False, False)
    assert (p.projection_head, p.loss_group_size, p.schedule, p.warmup_epochs) == ("jonske", 512, "epoch", 0)
    e = config.evaluate
    assert (e.selection, e.epochs, e.batch_size, e.lr, e.lr_decay_per_epoch, e.augment_p) == (
        "last",
        50,
        128,
        5e-4,
        0.97,
        0.2,
    )
    assert "linear_bn_train" in e.protocols and not e.head_bias
    assert scaled_lr(p) == pytest.approx(0.075 * 64)


# --- early errors -----------------------------------------------------------------------------------------------


def test_impossible_requests_fail_before_training(mini_pool):
    if torch.cuda.device_count() == 0:
        with pytest.raises(ConfigError, match="pretrain.devices=4"):
            plan_devices(mini_config(mini_pool, devices=4))
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            plan_devices(mini_config(mini_pool, accelerator="gpu"))
    else:
        with pytest.raises(ConfigError, match=r"asks for \d+ GPUs but this machine has"):
            plan_devices(mini_config(mini_pool, accelerator="gpu", devices=torch.cuda.device_count() + 1))
    with pytest.raises(ConfigError, match="must divide evenly over 3 devices"):
        plan_devices(mini_config(mini_pool, accelerator="cpu", devices=3))
    with pytest.raises(ConfigError, match="Unknown pool 'nope'"):
        pretrain(mini_config(mini_pool), "nope", "simclr")
    with pytest.raises(ConfigError, match="Unknown SSL method"):
        pretrain(mini_config(mini_pool), "mini", "simsiam2")
    config = mini_config(mini_pool, batch_size=128)
    with pytest.raises(ConfigError, match="batch_size=128 is larger than pool 'mini' \\(64 images\\)"):
        pretrain(config, "mini", "simclr")
    assert not pretraining_dir(config, "mini", "simclr").exists()


# --- resume, checkpoints, CLI -----------------------------------------------------------------------------------

KILL_SCRIPT = """
import os, signal, sys, yaml
import pytorch_lightning as pl
from rtl_core.config import load_config
from rtl_core.pretrain.train import pretrain

class KillAtEpoch(pl.Callback):
    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == 2:  # last.ckpt of epochs 0 and 1 is on disk
            os.kill(os.getpid(), signal.SIGKILL)

config = load_config("smoke", overrides=yaml.safe_load(open(sys.argv[1])))
pretrain(config, "mini", "simclr", callbacks=[KillAtEpoch()], progress=False)
"""


def test_killed_run_resumes_to_the_same_weights(mini_pool, tmp_path, monkeypatch):
    values = mini_values(mini_pool)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(values))
    killed_out, straight_out = tmp_path / "killed", tmp_path / "straight"
    # the child computes with this process's thread count: bf16 kernels round differently with another split
    env = dict(
        os.environ,
        RTL_OUTPUT_DIR=str(killed_out),
        PYTHONPATH=str(REPO_ROOT),
        OMP_NUM_THREADS=str(torch.get_num_threads()),
    )
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "config.yaml")],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    config = load_config("smoke", overrides=values)
    monkeypatch.setenv("RTL_OUTPUT_DIR", str(killed_out))
    assert (pretraining_dir(config, "mini", "simclr") / "last.ckpt").is_file()
    assert not list(killed_out.rglob("mini-simclr.pt"))
    resumed = pretrain(config, "mini", "simclr", progress=False)
    monkeypatch.setenv("RTL_OUTPUT_DIR", str(straight_out))
    straight = pretrain(config, "mini", "simclr", progress=False)

    a, b = read_sidecar(resumed), read_sidecar(straight)
    assert a["steps"] == b["steps"] == 3 * (64 // 16)
    # the loss curve survives the kill: the resumed run's metrics.csv holds every epoch, as the straight one's
    curves = [pd.read_csv(Path(s["run_dir"]) / "metrics.csv").dropna(subset=["loss_epoch"]) for s in (a, b)]
    assert list(curves[0]["epoch"]) == list(curves[1]["epoch"]) == [0, 1, 2]
    assert not list(Path(a["run_dir"]).glob("metrics.part*.csv"))
    wa, wb = torch.load(resumed, weights_only=True), torch.load(straight, weights_only=True)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=1e-5, msg=f"{key} differs after resume")
    assert not torch.equal(wa["conv1.weight"], build_backbone("resnet18").state_dict()["conv1.weight"])

    # the checkpoint round trip and its sidecar
    encoder, sidecar = load_encoder(straight, expect={"arch": "resnet18", "in_channels": 3, "method": "simclr"})
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, wb[key])
    for key in ("method", "pool", "epochs", "profile", "config_hash", "data_fingerprint", "packages", "git_commit"):
        assert sidecar[key] not in (None, ""), key
    assert (sidecar["pool"], sidecar["epochs"], sidecar["profile"]) == ("mini", 3, "smoke")
    assert sidecar["config_hash"] == config.hash()

    # wrong architecture or input channels: a clear CheckpointError
    with pytest.raises(CheckpointError, match="arch='resnet18' but 'resnet50' was asked for"):
        load_encoder(straight, expect={"arch": "resnet50"})
    with pytest.raises(CheckpointError, match="in_channels=3 but 1 was asked for"):
        load_encoder(straight, expect={"in_channels": 1})
    sidecar_path = straight.with_suffix(".json")
    sidecar_path.write_text(json.dumps({**sidecar, "arch": "resnet50"}))
    with pytest.raises(CheckpointError, match="does not fit a resnet50"):
        load_encoder(straight)

    # the CLI skips an existing encoder (same settings) and retrains it with --force
    sidecar_path.write_text(json.dumps(sidecar))
    parser = argparse.ArgumentParser()
    add_pretrain_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "pretrain",
            "--pool",
            "mini",
            "--method",
            "simclr",
            "--profile",
            "smoke",
            "--config",
            str(tmp_path / "config.yaml"),
        ]
    )
    mtime = straight.stat().st_mtime_ns
    assert args.func(args) == [straight]
    assert straight.stat().st_mtime_ns == mtime


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_pretrainings_lease_and_cut_off_checkpoint_are_taken_over(mini_pool, tmp_path, monkeypatch, caplog):
    """What a pretraining killed mid-write leaves: its lease (a live holder's refuses a second pretraining, naming
    it; a dead one's is taken over) and a cut-off last.ckpt (set aside, named; the pretraining starts again)."""
    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    config = mini_config(mini_pool, epochs=1)
    lease = lease_path(pretraining_logs_dir(config.study) / "mini-simclr")
    lease.parent.mkdir(parents=True)
    host, now = socket.gethostname(), time.time()
    holder = {"host": host, "pid": os.getppid(), "token": "x", "started": now, "heartbeat": now}  # a live process
    lease.write_text(json.dumps(holder))
    with pytest.raises(BusyError, match=f"mini-simclr .*running in another process: host {host}, pid {os.getppid()}"):
        pretrain(config, "mini", "simclr", progress=False)
    assert not pretraining_dir(config, "mini", "simclr").exists()

    folder = pretraining_dir(config, "mini", "simclr")
    folder.mkdir(parents=True)
    torch.save({"epoch": 0, "state_dict": build_backbone("resnet18").state_dict()}, folder / "whole.ckpt")
    whole = (folder / "whole.ckpt").read_bytes()
    mid = len(whole) // 2
    flipped = folder / "flipped.ckpt"
    flipped.write_bytes(whole[:mid] + bytes([whole[mid] ^ 0xFF]) + whole[mid + 1 :])  # one byte inside the archive
    assert torch_file_problem(flipped) is None and "CRC" in torch_file_problem(flipped, deep=True)
    (folder / "last.ckpt").write_bytes(whole[:mid])  # cut off: a full disk, a copy interrupted
    lease.write_text(json.dumps({**holder, "pid": _dead_pid()}))
    weights = pretrain(config, "mini", "simclr", progress=False)
    assert read_sidecar(weights)["steps"] == 64 // 16  # one whole epoch from the first step
    aside = list(folder.glob("last.ckpt.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == whole[:mid]
    assert f"{folder / 'last.ckpt'} is damaged (it is truncated" in caplog.text and aside[0].name in caplog.text
    assert not lease.exists()  # taken over, then released


def _rtl(command: str, config: Path, out: Path, log: Path) -> subprocess.Popen:
    """``python -m rtl_core.cli <command> --config <config>`` writing to ``out``, its stderr into ``log``."""
    env = dict(os.environ, RTL_OUTPUT_DIR=str(out), PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    with open(log, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "rtl_core.cli", command, "--config", str(config)],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def _wait_for_new(path: Path, process: subprocess.Popen, log: Path, after: float = 0.0) -> None:
    """Until ``path`` is (re)written after ``after``: the pretraining has trained an epoch in this process."""
    deadline = time.time() + 180
    while not (path.is_file() and path.stat().st_mtime > after):
        assert process.poll() is None and time.time() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


@pytest.mark.slow
def test_a_signal_ends_pretraining_non_zero_and_a_second_pretraining_is_refused(mini_pool, tmp_path):
    """Real `rtl pretrain` processes: a second pretraining of the encoder exits 2 naming the first (host, pid,
    since); SIGTERM ends the first with 143, SIGINT a resumed one with 130, each with one line saying what was kept;
    neither leaves its lease or a broken metrics.csv."""
    values = {"profile": "smoke", **mini_values(mini_pool, epochs=100_000, checkpoint_every_n_epochs=1)}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(values))
    out, config = tmp_path / "out", tmp_path / "config.yaml"
    processes = []
    try:
        _signals_end_runs_non_zero(config, out, tmp_path, processes)
    finally:
        for process in processes:  # whatever failed above, no training is left running
            if process.poll() is None:
                process.kill()
                process.wait()


def _signals_end_runs_non_zero(config: Path, out: Path, tmp_path: Path, processes: list) -> None:
    first = _rtl("pretrain", config, out, tmp_path / "first.log")
    processes.append(first)
    last = out / "runs" / "pretrain" / "smoke"
    _wait_for_new(last / "mini-simclr.lease.json", first, tmp_path / "first.log")
    second = _rtl("pretrain", config, out, tmp_path / "second.log")
    processes.append(second)
    assert second.wait(timeout=120) == 2
    refusal = (tmp_path / "second.log").read_text()
    assert f"running in another process: host {socket.gethostname()}, pid {first.pid}, since " in refusal, refusal

    folder = next(last.glob("mini-simclr-*"))
    _wait_for_new(folder / "last.ckpt", first, tmp_path / "first.log")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 143
    stopped = (tmp_path / "first.log").read_text().splitlines()
    line = [x for x in stopped if x.startswith("rtl pretrain: stopped by SIGTERM")]
    assert line and f"kept the pretraining checkpoint {folder / 'last.ckpt'}" in line[0] and "rerun" in line[0]

    written = (folder / "last.ckpt").stat().st_mtime
    third = _rtl("pretrain", config, out, tmp_path / "third.log")
    processes.append(third)
    _wait_for_new(folder / "last.ckpt", third, tmp_path / "third.log", after=written)  # resumed and trains on
    third.send_signal(signal.SIGINT)
    assert third.wait(timeout=120) == 130
    line = [x for x in (tmp_path / "third.log").read_text().splitlines() if x.startswith("rtl pretrain: stopped")]
    assert line and line[0].startswith(f"rtl pretrain: stopped by SIGINT; kept the pretraining checkpoint {folder}")
    assert not list(out.rglob("*.lease.json")) and not list(out.rglob("mini-simclr.pt"))
    for metrics in folder.glob("metrics*.csv"):
        assert {"epoch", "step"} <= set(pd.read_csv(metrics).columns), metrics


def test_one_jitter_policy_for_grey_and_colour_images(mini_pool):
    """The authors' policy: grey (CT) images get the colour images' brightness/contrast jitter, not a weaker one,
    and stay exactly grey; a study may set a weaker grey strength explicitly."""
    images = real_batch(mini_pool, n=2)
    grey = images[:1].float().mean(1, keepdim=True).round().to(torch.uint8).repeat(256, 3, 1, 1)
    spread = {}
    for strength in (None, 0.1):
        augment = BatchAugment(
            AugmentConfig(
                crop_size=16, min_scale=1.0, ratio=(1.0, 1.0), hflip_p=0.0, jitter_p=1.0, grey_strength=strength
            )
        )
        views = augment(grey, torch.Generator().manual_seed(3))
        assert is_grey(views).all()
        spread[strength] = views.mean(dim=(1, 2, 3)).std().item()
    assert spread[None] > 3 * spread[0.1]  # ±0.8 brightness/contrast vs ±0.1
    assert load_config("default").pretrain.grey_jitter_strength is None


def test_the_jitter_settings_reach_the_augmentation_alike_for_both_pools(mini_pool):
    """pretrain.jitter_*: one policy for both pools. Without brightness/contrast jitter (the default profile, chosen
    by the kNN sanity check) a grey image's intensities pass unchanged while a colour image still changes colour."""
    from rtl_core.pretrain.augment import augment_config

    default = load_config("default").pretrain
    policy = augment_config(default)
    assert (policy.brightness, policy.contrast, policy.grey_strength) == (0.0, 0.0, None)
    assert (policy.saturation, policy.hue) == (default.jitter_saturation, default.jitter_hue) == (0.8, 0.2)
    fixed = dict(crop_size=16, min_scale=1.0, ratio=(1.0, 1.0), hflip_p=0.0, jitter_p=1.0, grey_p=0.0)
    images = real_batch(mini_pool, n=2)
    grey = images[:1].float().mean(1, keepdim=True).round().to(torch.uint8).repeat(8, 3, 1, 1)
    colour = images[1:2].repeat(8, 1, 1, 1)
    plain = BatchAugment(AugmentConfig(**fixed, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0))
    ours = BatchAugment(
        AugmentConfig(
            **fixed,
            brightness=policy.brightness,
            contrast=policy.contrast,
            saturation=policy.saturation,
            hue=policy.hue,
        )
    )

    def same_draws():
        return torch.Generator().manual_seed(0)

    assert torch.equal(ours(grey, same_draws()), plain(grey, same_draws()))
    assert not torch.allclose(ours(colour, same_draws()), plain(colour, same_draws()), atol=1e-3)

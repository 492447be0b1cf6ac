"""Pretraining replicates (issue 25, item 2): K encoders per ssl:/sequential: arm, from pretraining to the records.

Replicate r of an arm is its own pretraining (seed ``replicate_seed(seed, r)``, checkpoint ``<pool>-<method>-r<r>``),
evaluated on the ``evaluate.replicate_protocols`` × ``replicate_seeds`` part of the grid; its records say which
replicate they are, and the results table carries the ``replicate`` column the claims engine reads. Replicate 0 is
the study's encoder as it was before replicates existed: a study with K = 1 keeps its hashes, keys and files.
"""

from __future__ import annotations

import argparse
import json
import shlex

import pytest
import torch

from rtl_core.cli import main as rtl_main
from rtl_core.config import load_config
from rtl_core.errors import CheckpointError, ConfigError
from rtl_core.evaluate.runner import plan_grid, run_grid, settings_hash
from rtl_core.models.backbones import build_backbone
from rtl_core.models.checkpoints import read_sidecar, save_encoder
from rtl_core.models.inits import check_checkpoint
from rtl_core.names import parse_init
from rtl_core.paths import encoder_stem
from rtl_core.pretrain.train import pretraining_key, replicate_seed
from rtl_core.results import RunKey, results_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRID = {
    "tasks": ["mri_cls"],
    "inits": ["scratch", "ssl:ct:simclr"],
    "protocols": ["linear", "lowlabel_1"],
    "seeds": [42, 1],
    "replicate_protocols": ["linear"],
    "replicate_seeds": [42],
    "image_size": 16,
    "epochs": 1,
    "batch_size": 32,
    "max_train_images": 48,
    "min_steps": 0,
    "linear_epochs": 2,
}


def test_k_of_one_changes_no_hash_key_or_path_and_bad_replicate_settings_are_refused():
    plain = load_config("smoke", overrides={"pretrain": {"replicates": 1}})
    one = plain.model_copy(update={"pretrain": plain.pretrain.model_copy(update={"replicates": {"ssl:ct:simclr": 1}})})
    three = load_config("smoke", overrides={"pretrain": {"replicates": {"ssl:ct:simclr": 3}}})
    assert plain.hash() == one.hash() != three.hash()
    # how many replicates a study asks for is not a setting of any one pretraining or run
    assert pretraining_key(plain, "ct", "simclr", False) == pretraining_key(three, "ct", "simclr", False)
    assert pretraining_key(three, "ct", "simclr", False, 1) != pretraining_key(three, "ct", "simclr", False, 2)
    assert settings_hash(plain) == settings_hash(three)
    assert [three.pretrain.replicates_of(i) for i in ("ssl:ct:simclr", "ssl:natural:simclr", "scratch")] == [3, 1, 1]
    every = load_config("smoke", overrides={"pretrain": {"replicates": 2}})
    assert [every.pretrain.replicates_of(i) for i in ("ssl:ct:simclr", "sequential:ct:simclr", "scratch")] == [2, 2, 1]
    assert replicate_seed(42, 0) == 42 and len({replicate_seed(42, r) for r in range(5)}) == 5
    assert encoder_stem("ct", "simclr", "s").name == "ct-simclr"
    assert encoder_stem("ct", "simclr", "s", replicate=2).name == "ct-simclr-r2"
    assert RunKey("t", "ssl:ct:simclr", "linear", 1).path("/r") != RunKey("t", "ssl:ct:simclr", "linear", 1, 1).path(
        "/r"
    )

    with pytest.raises(ConfigError, match="'torchvision:resnet50:IMAGENET1K_V2' is not pretrained by the study"):
        load_config("smoke", overrides={"pretrain": {"replicates": {"torchvision:resnet50:IMAGENET1K_V2": 3}}})
    with pytest.raises(ConfigError, match="fewer than 1"):
        load_config("smoke", overrides={"pretrain": {"replicates": 0}})
    with pytest.raises(ConfigError, match=r"evaluate.replicate_seeds: \[7\] are not in evaluate.seeds"):
        load_config("smoke", overrides={"evaluate": {"replicate_seeds": [7]}})
    with pytest.raises(ConfigError, match="evaluate.replicate_protocols"):
        load_config("smoke", overrides={"evaluate": {"protocols": ["linear"], "replicate_protocols": ["finetune"]}})


def test_rtl_pretrain_trains_each_replicate_with_its_own_seed_and_refuses_one_it_does_not_have(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    cfg = tmp_path / "reps.yaml"
    cfg.write_text(
        json.dumps(
            {
                "profile": "smoke",
                "data": {"pool_size": 64},
                "pretrain": {"batch_size": 32, "replicates": {"ssl:ct:simclr": 2}},
            }
        )
    )
    base = ["pretrain", "--config", str(cfg), "--pool", "ct", "--method", "simclr", "--epochs", "1"]
    assert rtl_main([*base, "--replicate", "2"]) == 2
    assert "--replicate 2: ssl:ct:simclr has K = 2 replicate(s) (0 … 1)" in capsys.readouterr().err
    assert rtl_main(base) == 0
    stems = [encoder_stem("ct", "simclr", "reps", replicate=r) for r in (0, 1)]
    sidecars = [read_sidecar(s) for s in stems]
    assert [s["replicate"] for s in sidecars] == [0, 1] and [s["seed"] for s in sidecars] == [42, 1042]
    assert sidecars[0]["run_key"] != sidecars[1]["run_key"]
    weights = [torch.load(s.with_suffix(".pt"), weights_only=True)["conv1.weight"] for s in stems]
    assert not torch.equal(*weights)  # two pretraining runs of one recipe, not one encoder twice
    mtimes = [s.with_suffix(".pt").stat().st_mtime_ns for s in stems]
    assert rtl_main([*base, "--replicate", "1"]) == 0  # finished: reused, not retrained
    assert [s.with_suffix(".pt").stat().st_mtime_ns for s in stems] == mtimes


def _stand_in_encoders(study: str, k: int) -> None:
    """Random-weight checkpoints in our format for replicates 0 … k-1 of ssl:ct:simclr (stand-ins for pretraining)."""
    for r in range(k):
        torch.manual_seed(100 + r)
        stem = encoder_stem("ct", "simclr", study, replicate=r)
        save_encoder(stem, build_backbone("resnet18"), "resnet18", method="simclr", pool="ct", replicate=r)


def test_the_grid_runs_every_replicate_on_its_part_of_the_grid_and_the_table_names_the_replicate(tmp_path, monkeypatch):
    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    cfg = tmp_path / "reps.yaml"
    cfg.write_text(json.dumps({"profile": "smoke", "evaluate": GRID, "pretrain": {"replicates": {"ssl:ct:simclr": 3}}}))
    config = load_config(path=cfg)
    keys = plan_grid(config)
    # scratch 2 protocols × 2 seeds; ct replicate 0 the same; replicates 1, 2: linear × seed 42 only
    assert len(keys) == 4 + 4 + 2
    assert {(k.replicate, k.protocol, k.seed) for k in keys if k.replicate} == {(1, "linear", 42), (2, "linear", 42)}
    assert {k.replicate for k in keys if k.init == "scratch"} == {0}

    _stand_in_encoders("reps", 2)  # replicate 2 is missing: the grid stops before any run, naming the command
    with pytest.raises(CheckpointError, match="ct-simclr-r2.pt") as missing:
        run_grid(config, progress=False)
    command = missing.value.args[0].split("Create it with `")[1].split("`")[0]
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    from rtl_core.pretrain.cli import add_pretrain_parser

    add_pretrain_parser(sub)
    hint = parser.parse_args(shlex.split(command)[1:])
    assert hint.replicate == [2] and hint.pool == ["ct"] and hint.config == str(cfg)
    assert not list((tmp_path / "results").rglob("seed*.json"))

    _stand_in_encoders("reps", 3)
    report = run_grid(config, progress=False)
    assert len(report.ran) == 10 and not report.failed
    root = tmp_path / "results" / "reps"
    record = json.loads((root / "mri_cls" / "ssl_ct_simclr-r2" / "linear" / "seed42.json").read_text())
    assert record["replicate"] == 2 and record["init"] == "ssl:ct:simclr"
    assert record["encoder"]["file"].endswith("ct-simclr-r2.pt") and record["init_info"]["sidecar"]["replicate"] == 2
    df = results_table(root=root)
    primary = df[df["primary"]]
    ct = primary[primary["init"] == "ssl:ct:simclr"]
    assert sorted(ct.groupby("replicate").size().tolist()) == [1, 1, 4] and set(df["replicate"]) == {0, 1, 2}
    # the three encoders differ, so their linear runs differ: the replicate is the encoder, not a copy of one
    linear42 = ct[(ct["protocol"] == "linear") & (ct["seed"] == 42)]
    assert len(linear42) == 3 and linear42["encoder"].nunique() == 3

    again = run_grid(config, progress=False)  # every record is finished: nothing is redone
    assert not again.ran and len(again.skipped) == 10


def test_reproduce_pretrains_every_replicate_and_sequential_replicates_start_from_naturals():
    from rtl_core.pipeline.run import study_steps

    config = load_config(
        "smoke",
        overrides={
            "evaluate": {"inits": ["scratch", "ssl:ct:simclr", "sequential:ct:simclr"]},
            "pretrain": {"pools": ["ct"], "replicates": {"ssl:ct:simclr": 3, "sequential:ct:simclr": 2}},
        },
    )
    whats = [s.what for s in study_steps(config) if s.stage == "pretrain"]
    assert sorted(whats) == sorted(
        [("ct", "simclr", False, r) for r in range(3)]
        + [("natural", "simclr", False, r) for r in range(2)]
        + [("ct", "simclr", True, r) for r in range(2)]
    )
    assert [w[3] for w in whats] == sorted(w[3] for w in whats)  # replicate 0 of every arm first
    with pytest.raises(CheckpointError, match=r"--sequential --replicate 1"):
        check_checkpoint(parse_init("sequential:ct:simclr"), "nowhere", 1)

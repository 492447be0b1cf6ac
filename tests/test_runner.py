"""The multi-seed runner: resuming a killed grid, redoing broken records, the tidy table, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from rtl_core.analysis.stats import compare_inits
from rtl_core.cli import main as rtl_main
from rtl_core.config import load_config
from rtl_core.errors import ConfigError
from rtl_core.evaluate.runner import plan_grid, run_grid, settings_hash
from rtl_core.models.backbones import build_backbone
from rtl_core.models.checkpoints import save_encoder
from rtl_core.paths import encoder_stem
from rtl_core.results import RunKey, record_problem, results_table

GRID = {
    "tasks": ["mri_cls"],
    "inits": ["scratch", "ssl:ct:simclr"],
    "protocols": ["linear", "lowlabel_1"],
    "seeds": [42, 1],
    "image_size": 16,
    "epochs": 1,
    "batch_size": 32,
    "max_train_images": 48,
    "min_steps": 0,
    "linear_epochs": 2,
}


class Killed(Exception):
    pass


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def config():
    torch.manual_seed(7)
    save_encoder(
        encoder_stem("ct", "simclr", "smoke"), build_backbone("resnet18"), "resnet18", method="simclr", pool="ct"
    )
    return load_config("smoke", overrides={"evaluate": GRID})


def _records(root):
    return sorted(root.rglob("seed*.json"))


def test_killed_grid_resumes_without_recomputing_or_duplicating(config, tmp_path):
    keys = plan_grid(config)
    assert len(keys) == 8 and keys[0] == RunKey("mri_cls", "scratch", "linear", 42)

    def kill_after_three(key, record):
        if len(_records(tmp_path)) == 3:
            raise Killed

    with pytest.raises(Killed):
        run_grid(config, root=tmp_path, progress=False, on_run_done=kill_after_three)
    first = {p: p.read_text() for p in _records(tmp_path)}
    assert len(first) == 3
    assert keys[0].path(tmp_path) in first and keys[0].path(tmp_path).parent.name == "linear"

    report = run_grid(config, root=tmp_path, progress=False)
    assert len(report.skipped) == 3 and len(report.ran) == 5 and not report.redone
    assert set(report.ran) == set(keys[3:])
    files = _records(tmp_path)
    assert len(files) == 8 and len({json.loads(p.read_text())["finished"] + str(p) for p in files}) == 8
    assert all(p.read_text() == text for p, text in first.items())  # finished runs were not redone
    assert not list(tmp_path.rglob("*.tmp"))

    again = run_grid(config, root=tmp_path, progress=False)
    assert not again.ran and len(again.skipped) == 8

    # tidy table: one row per run and metric, usable by the statistics module
    df = results_table(root=tmp_path)
    assert len(df) == 8 * 3 and set(df["metric"]) == {"accuracy", "balanced_accuracy", "auc"}
    assert set(df["data_fraction"]) == {1.0, 0.01} and (df["profile"] == "smoke").all()
    record = json.loads(keys[0].path(tmp_path).read_text())
    for key in (
        "config",
        "seed",
        "split_fingerprint",
        "metrics",
        "curves",
        "wall_seconds",
        "git_commit",
        "profile",
        "machine",
    ):
        assert key in record
    cmp = compare_inits(df[df["metric"] == "accuracy"], "ssl:ct:simclr", "scratch")
    assert len(cmp) == 2 and (cmp["n_a"] == 2).all()


def test_broken_records_are_detected_redone_and_never_read(config, tmp_path):
    run_grid(config, root=tmp_path, progress=False)
    keys = plan_grid(config)
    half = keys[1].path(tmp_path)
    half.write_text(half.read_text()[: len(half.read_text()) // 2])  # half-written
    unmarked = keys[2].path(tmp_path)
    record = json.loads(unmarked.read_text())
    record.pop("status")
    unmarked.write_text(json.dumps(record))  # no completion marker
    garbage = keys[3].path(tmp_path)
    garbage.write_bytes(b"\x00\xff\x00")  # corrupted
    stale = keys[4].path(tmp_path)
    record = json.loads(stale.read_text())
    record["settings_hash"] = "000000000000"
    stale.write_text(json.dumps(record))  # made with other settings

    assert record_problem(half).startswith("not valid JSON")
    assert record_problem(unmarked) == "not marked complete"
    assert len(results_table(root=tmp_path)) == (8 - 3) * 3  # the broken ones are never read as results

    report = run_grid(config, root=tmp_path, progress=False)
    assert {k for k, _ in report.redone} == {keys[1], keys[2], keys[3], keys[4]}
    assert len(report.skipped) == 4
    assert all(record_problem(k.path(tmp_path), k, settings_hash(config)) is None for k in keys)
    assert len(results_table(root=tmp_path)) == 8 * 3


def test_cli_runs_and_prints_the_comparison(config, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    save_encoder(
        encoder_stem("ct", "simclr", "smoke"), build_backbone("resnet18"), "resnet18", method="simclr", pool="ct"
    )
    cfg_file = tmp_path / "grid.yaml"
    grid = {"profile": "smoke", "study": "smoke", "evaluate": {**GRID, "protocols": ["linear"]}}
    cfg_file.write_text(json.dumps(grid))
    assert rtl_main(["evaluate", "--config", str(cfg_file), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "4 run(s) done" in out and "B vs A" in out and "p Welch (uncorrected)" in out and "ssl:ct:simclr" in out
    assert len(list((tmp_path / "results" / "smoke").rglob("seed*.json"))) == 4


def test_same_seed_same_result_and_best_val_selection(config, tmp_path):
    best = config.model_copy(
        update={"evaluate": config.evaluate.model_copy(update={"selection": "best_val", "epochs": 3})}
    )
    key = RunKey("mri_cls", "scratch", "lowlabel_1", 42)
    first = run_grid(best, protocols=["lowlabel_1"], seeds=[42], inits=["scratch"], root=tmp_path / "a", progress=False)
    second = run_grid(
        best, protocols=["lowlabel_1"], seeds=[42], inits=["scratch"], root=tmp_path / "b", progress=False
    )
    assert first.ran == second.ran == [key]
    a, b = (json.loads(key.path(tmp_path / d).read_text()) for d in ("a", "b"))
    assert a["metrics"] == b["metrics"] and a["curves"]["train_loss"] == b["curves"]["train_loss"]
    curve = a["curves"]["val_accuracy"]
    assert len(curve) == 3 and None not in curve
    assert a["val_metrics"]["accuracy"] == max(curve) and curve[a["selected_epoch"] - 1] == max(curve)


def test_a_replaced_encoder_makes_its_records_stale_they_are_redone_and_never_pooled(tmp_path, monkeypatch, capsys):
    """Issue 29: evaluate seed 42, `rtl pretrain` replaces the checkpoint, evaluate again: seed 42 is redone on the
    new encoder instead of being pooled with seed 1 of another encoder."""
    import hashlib

    from rtl_core.evaluate.runner import encoder_identity
    from rtl_core.results import STALE_ENCODER, read_record

    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    stem = encoder_stem("ct", "simclr", "arm")
    weights = stem.with_suffix(".pt")
    torch.manual_seed(1)  # a stand-in for `rtl pretrain --config C` (random weights, our checkpoint format)
    save_encoder(stem, build_backbone("resnet18"), "resnet18", method="simclr", pool="ct", run_key="one-epoch")
    first = hashlib.sha256(weights.read_bytes()).hexdigest()
    cfg_file = tmp_path / "c.yaml"
    grid = {**GRID, "inits": ["ssl:ct:simclr"], "protocols": ["linear"]}
    cfg_file.write_text(json.dumps({"profile": "smoke", "study": "arm", "evaluate": grid}))
    results = tmp_path / "results" / "arm"
    seed42, seed1 = (RunKey("mri_cls", "ssl:ct:simclr", "linear", s).path(results) for s in (42, 1))

    assert rtl_main(["evaluate", "--config", str(cfg_file), "--seeds", "42", "--no-progress"]) == 0
    made = json.loads(seed42.read_text())["encoder"]
    assert made["sha256"] == first and made["run_key"] == "one-epoch" and made["file"] == str(weights.resolve())

    torch.manual_seed(2)  # `rtl pretrain --config C --epochs 3`: silently replaces the checkpoint
    save_encoder(stem, build_backbone("resnet18"), "resnet18", method="simclr", pool="ct", run_key="three-epochs")
    second = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert second != first
    assert results_table(root=results).empty  # the seed-42 record is stale: no longer a result

    capsys.readouterr()
    assert rtl_main(["evaluate", "--config", str(cfg_file), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 run(s) done, 0 already finished, 1 redone (1 because their encoder changed since they ran)" in out
    records = {p: json.loads(p.read_text()) for p in (seed42, seed1)}
    assert {r["encoder"]["sha256"] for r in records.values()} == {second}
    assert records[seed42]["redone_because"].startswith(STALE_ENCODER) and records[seed1]["redone_because"] is None
    df = results_table(root=results)
    assert set(df["seed"]) == {42, 1} and set(df["encoder"]) == {f"sha256:{second[:12]}"}

    # A record written before records named their encoder still loads, but counts as an unknown encoder: redone.
    old = records[seed1]
    old.pop("encoder")
    seed1.write_text(json.dumps(old))
    record, problem = read_record(seed1)
    assert problem is None and record.encoder is None
    current = encoder_identity("ssl:ct:simclr", "arm")
    assert record_problem(seed1, record.key, record.settings_hash, current).startswith(STALE_ENCODER)
    assert set(results_table(root=results)["seed"]) == {42}
    assert encoder_identity("scratch", "arm")["sha256"] is None  # no file: nothing to compare, never stale


def test_seeds_outside_the_config_are_refused_naming_the_allowed_ones(config, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RTL_OUTPUT_DIR", str(tmp_path))
    cfg_file = tmp_path / "grid.yaml"
    cfg_file.write_text(json.dumps({"profile": "smoke", "evaluate": {**GRID, "inits": ["scratch"]}}))
    assert rtl_main(["evaluate", "--config", str(cfg_file), "--seeds", "42", "7", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--seeds 7: not in evaluate.seeds" in err and "allows 42 1" in err
    assert not list(tmp_path.rglob("seed*.json"))
    with pytest.raises(ConfigError, match="allows 42 1"):
        plan_grid(config, seeds=[7])


def test_help_answers_without_importing_torch_lightly_or_lightning():
    """`rtl --help` and `rtl <verb> --help` (issue 29: 16 s, lightly and Lightning imported at start)."""
    import subprocess
    import sys

    code = """
import contextlib, io, re, runpy, sys
def help_of(*argv):
    sys.argv = ["rtl", *argv, "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        runpy.run_module("rtl_core.cli", run_name="__main__")
    return out.getvalue()
verbs = re.search(r"{([a-z,]+)}", help_of()).group(1).split(",")
for verb in verbs:
    assert verb in help_of(verb), verb
heavy = {"torch", "torchvision", "lightly", "pytorch_lightning", "lightning", "pandas"}
print(len(verbs), sorted(heavy & {m.split(".")[0] for m in sys.modules}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    count, loaded = done.stdout.strip().split(" ", 1)
    assert int(count) >= 9 and loaded == "[]"


def test_a_workers_lease_file_is_not_read_as_a_record(tmp_path):
    """``seed<k>.json.lease.json`` lies beside the records while a grid runs: never a broken record, never a result."""
    from rtl_core.results import load_records, record_paths

    folder = tmp_path / "ct_cls" / "scratch" / "linear"
    folder.mkdir(parents=True)
    (folder / "seed42.json.lease.json").write_text(json.dumps({"host": "h", "pid": 1}))
    assert record_paths(tmp_path) == []
    assert load_records(tmp_path, strict=True) == []  # strict: a lease read as a record would raise

"""`make gpu-check` without a GPU: it refuses plainly unless --cpu-smoke, a failing stage fails the command, and
the smoke study (pack files, pretrain → evaluate → analyze) passes with a one-screen summary."""

from __future__ import annotations

import torch

from rtl_core.bench import gpu_check


def test_without_a_gpu_it_says_so_and_exits_non_zero(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == gpu_check.NO_GPU != 0
    err = capsys.readouterr().err
    assert "no CUDA GPU is visible" in err and "--cpu-smoke" in err


def test_a_failing_stage_fails_the_check_and_keeps_its_log(monkeypatch, tmp_path):
    def missing_data(root, sizes):  # the study's pools and task, in folders that do not exist
        gone = {"format": "imagefolder", "path": str(root / "nowhere")}
        return {"pools": {"photos": gone, "scans": {**gone, "format": "dicom"}}, "tasks": {"photo_cls": gone}}

    monkeypatch.setattr(gpu_check, "make_data", missing_data)
    status, text = gpu_check.check(cpu_smoke=True, keep=str(tmp_path / "check"))
    assert status == 1 and "FAIL  pretrain" in text and "gpu-check: FAILED: pretrain" in text
    log = tmp_path / "check" / "logs" / "pretrain.log"
    assert f"log of pretrain: {log}" in text and "nowhere" in log.read_text()
    assert "evaluate" not in text.split("FAIL  pretrain")[1].split("gpu-check:")[0]  # stops at the first failure


def test_summary_lists_stages_runs_and_the_verdict():
    stages = [gpu_check.Stage("pretrain", True, 1.5), gpu_check.Stage("records", False, 0.0, "5 of 6", "/x.log")]
    runs = [{"init": "scratch", "protocol": "linear", "primary_metric": "accuracy", "metrics": {"accuracy": 0.5}}]
    text = gpu_check.summary(stages, runs, "head")
    assert text.splitlines()[0] == "head" and "ok    pretrain" in text and "FAIL  records" in text
    assert "accuracy 0.500" in text and text.endswith("log of records: /x.log")
    assert len(text.splitlines()) <= 24  # one screen


def test_the_cpu_smoke_study_runs_pretrain_evaluate_and_analyze_from_pack_files(tmp_path):
    status, text = gpu_check.check(cpu_smoke=True, keep=str(tmp_path / "check"))  # ~50 s: three child processes
    assert status == 0, text
    for line in ("ok    pretrain", "ok    evaluate", "ok    analyze", "ok    encoders", "6 of 6; device ['cpu']"):
        assert line in text, line
    assert "gpu-check: all passed" in text and "ssl:scans:simclr" in text


def test_the_gpu_study_config_is_valid_and_at_the_paper_settings(tmp_path):
    from rtl_core.config import load_config

    gone = {"format": "imagefolder", "path": str(tmp_path)}
    data = {"pools": {"photos": gone, "scans": {**gone, "format": "dicom"}}, "tasks": {"photo_cls": gone}}
    config = load_config(path=gpu_check.write_config(tmp_path, gpu_check.PAPER, data))
    p = config.pretrain
    assert (config.profile, p.backbone, p.crop_size, p.optimizer, p.precision) == (
        "paper",
        "resnet50",
        256,
        "lars",
        "bf16-mixed",
    )
    assert config.data.image_size == 256 and p.batch_size == gpu_check.PAPER.batch <= gpu_check.PAPER.photos
    assert config.evaluate.inits == ["scratch", "ssl:photos:simclr", "ssl:scans:simclr"]

"""``make gpu-check``: one command that says whether this machine runs the paper's pipeline on its GPU.

1. The GPU bench (:mod:`rtl_core.bench.gpu_pretrain_bench`: the paper profile's pretraining step, eager and
   compiled), its figures merged into ``reports/bench.json``.
2. A small study at the paper's settings (ResNet-50, 256 px, LARS, bf16-mixed; one epoch, small batches) on data
   made from pack files in a temporary folder: an ImageFolder pool of JPEGs, a DICOM pool (the pack's CT slices,
   hard-linked to a few hundred files) and an ImageFolder task, run through ``rtl pretrain``, ``rtl evaluate``
   and ``rtl analyze``, each a child process writing under a temporary ``RTL_OUTPUT_DIR``.
3. A one-screen summary: each stage's status and time, the device and precision the records name, the metrics.

The exit status is 0 only when every stage succeeded and (without ``--cpu-smoke``) the records say ``cuda``.
Without a visible CUDA GPU the command says so and exits 2, unless ``--cpu-smoke`` is given: then the study runs
at the smoke profile's sizes on the CPU and the GPU bench is skipped (what the test suite runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

STUDY = "gpu_check"
NO_GPU = 2
"""Exit status when no CUDA GPU is visible (and ``--cpu-smoke`` was not given)."""


@dataclass
class Stage:
    """One step of the check: its name, whether it succeeded, its seconds, and a line of detail."""

    name: str
    ok: bool
    seconds: float
    detail: str = ""
    log: str = ""


@dataclass
class Sizes:
    """How big the check's study is (``paper``: on a GPU; ``smoke``: ``--cpu-smoke``)."""

    profile: str
    photos: int
    dicom_links: int
    per_class: int
    batch: int
    extra: dict = field(default_factory=dict)


PAPER = Sizes("paper", photos=768, dicom_links=20, per_class=40, batch=256)
SMOKE = Sizes("smoke", photos=48, dicom_links=1, per_class=8, batch=8)


def make_data(root: Path, sizes: Sizes) -> dict[str, dict]:
    """Pools and a task from pack files under ``root``; their ``data.pools`` / ``data.tasks`` entries."""
    from rtl_core.bench.stream_bench import pack_jpegs
    from rtl_core.paths import data_root

    pack = data_root()
    pack_jpegs(root / "photos", sizes.photos, labels=tuple(f"{k:03d}" for k in range(3, 10)))  # not the task's
    scans = root / "scans"
    scans.mkdir(parents=True)
    raw = pack / "raw-samples"
    for source in sorted((raw / "dicom_series_totalseg").iterdir()) + sorted((raw / "dicom_tcga").glob("*.dcm")):
        first = Path(shutil.copyfile(source, scans / f"0_{source.name}"))  # the pack is read-only: copy, then link
        for k in range(1, sizes.dicom_links):
            os.link(first, scans / f"{k}_{source.name}")
    with zipfile.ZipFile(pack / "natural/imagenette_64/images.zip") as archive:
        names = archive.namelist()
        for label in ("000", "001", "002"):
            members = [n for n in names if n.startswith(f"train/{label}/")][: sizes.per_class * 3 // 2]
            for i, member in enumerate(members):
                split = "train" if i < sizes.per_class else "test"
                target = root / "task" / split / f"class{label}" / Path(member).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
    return {
        "pools": {
            "photos": {"format": "imagefolder", "path": str(root / "photos")},
            "scans": {"format": "dicom", "path": str(scans), "window": "abdomen"},
        },
        "tasks": {"photo_cls": {"format": "imagefolder", "path": str(root / "task"), "val_fraction": 0.25}},
    }


def write_config(root: Path, sizes: Sizes, data: dict[str, dict]) -> Path:
    """The check's study config: the profile's settings, one epoch, the pools and task of :func:`make_data`."""
    import yaml

    inits = ["scratch", "ssl:photos:simclr", "ssl:scans:simclr"]
    values = {
        "profile": sizes.profile,
        "study": STUDY,
        "data": {**data, "num_workers": min(8, os.cpu_count() or 1) if sizes.profile == "paper" else 0},
        "pretrain": {
            "pools": ["photos", "scans"],
            "methods": ["simclr"],
            "epochs": 1,
            "batch_size": sizes.batch,
            "replicates": 1,
            **({"loss_group_size": sizes.batch} if sizes.profile == "paper" else {}),
        },
        "evaluate": {
            "tasks": ["photo_cls"],
            "inits": inits,
            "protocols": ["finetune", "linear"],
            "seeds": [42],
            "epochs": 1,
            "linear_epochs": 1,
            "batch_size": 32,
            "learning_curves": False,
        },
        "analysis": {
            "cka_images": 32,
            "embedding_images": 32,
            "probe_layers": ["layer4"],
            "sanity_random_seeds": 1,
            "builtin_questions": "none",
        },
    }
    path = root / "gpu_check.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def run_stage(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Stage:
    """``python -m rtl_core.cli <argv>`` in a child process; its output goes to ``logs/<name>.log``."""
    log = logs / f"{name}.log"
    start = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.run(
            [sys.executable, "-m", "rtl_core.cli", *argv], env=env, stdout=handle, stderr=subprocess.STDOUT, check=False
        )
    seconds = time.perf_counter() - start
    detail = ""
    if proc.returncode:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:]
        detail = f"exit {proc.returncode}" + (f": {tail[0][:100]}" if tail else "")
    return Stage(name, proc.returncode == 0, seconds, detail, str(log))


def records(out: Path) -> list[dict]:
    """The study's run records (``results/<study>/…/seed<k>.json``)."""
    return [json.loads(p.read_text()) for p in sorted((out / "results" / STUDY).rglob("seed*.json"))]


def study_checks(out: Path, expect_cuda: bool) -> list[Stage]:
    """What the finished study must hold: both encoders, every run, the device the records name, the analysis."""
    checks = []
    encoders = sorted(p.name for p in (out / "checkpoints" / STUDY).glob("*.pt"))
    checks.append(Stage("encoders", len(encoders) == 2, 0.0, ", ".join(encoders) or "none written"))
    runs = records(out)
    devices = sorted({str(r.get("device", "?")).split(":")[0] for r in runs})
    precisions = sorted({str(r.get("precision", "?")) for r in runs})
    want = 3 * 2  # inits × protocols × one seed
    checks.append(Stage("records", len(runs) == want, 0.0, f"{len(runs)} of {want}; device {devices}, {precisions}"))
    if expect_cuda:
        checks.append(Stage("on the GPU", devices == ["cuda"], 0.0, f"records name {devices}"))
    done = (out / "analysis" / STUDY / "done.json").is_file()
    checks.append(Stage("analysis", done, 0.0, str(out / "analysis" / STUDY)))
    return checks


def summary(stages: list[Stage], runs: list[dict], header: str) -> str:
    """The one-screen summary: a line per stage and check, then each run's primary metric."""
    lines = [header, ""]
    for s in stages:
        lines.append(f"  {'ok  ' if s.ok else 'FAIL'}  {s.name:<14}{s.seconds:>8.1f} s  {s.detail}")
    if runs:
        lines.append("")
        for r in sorted(runs, key=lambda r: (r["init"], r["protocol"])):
            metric = r.get("primary_metric", "")
            value = r.get("metrics", {}).get(metric)
            shown = f"{value:.3f}" if isinstance(value, int | float) else "n/a"
            lines.append(f"  {r['init']:<22}{r['protocol']:<10}{metric} {shown}")
    failed = [s for s in stages if not s.ok]
    lines += ["", f"gpu-check: {'FAILED: ' + ', '.join(s.name for s in failed) if failed else 'all passed'}"]
    for s in failed:
        if s.log:
            lines.append(f"  log of {s.name}: {s.log}")
    return "\n".join(lines)


def gpu_bench() -> Stage:
    """The GPU bench, its figures merged into ``bench.json``."""
    from rtl_core.bench import gpu_pretrain_bench, merge_figures

    start = time.perf_counter()
    try:
        figures = gpu_pretrain_bench.run()
    except Exception as exc:  # noqa: BLE001 - reported as a failed stage, the check goes on
        return Stage("gpu bench", False, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"[:110])
    merge_figures(figures)
    eager = {k.rsplit(".", 1)[-1]: v for k, v in figures.items() if k.startswith("pretrain_gpu.eager.")}
    detail = (
        f"{eager.get('pairs_per_s')} pairs/s (eager), MFU {eager.get('mfu')}, peak {eager.get('peak_memory_gb')} GB"
    )
    return Stage("gpu bench", True, time.perf_counter() - start, detail)


def check(cpu_smoke: bool = False, keep: str | None = None) -> tuple[int, str]:
    """Run the check (module doc); the exit status and the summary."""
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not cpu_smoke:
        return NO_GPU, (
            "gpu-check: no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is False), so nothing was "
            "measured. Run it on a machine with an NVIDIA GPU and a CUDA build of torch, or pass --cpu-smoke to run "
            "the study at smoke size on the CPU (no GPU figures)."
        )
    sizes = SMOKE if cpu_smoke else PAPER
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="rtl-gpu-check-"))
    root.mkdir(parents=True, exist_ok=True)
    stages: list[Stage] = []
    if cuda and not cpu_smoke:
        stages.append(gpu_bench())
    out = root / "artifacts"
    try:
        config = write_config(root, sizes, make_data(root / "data", sizes))
    except Exception as exc:  # noqa: BLE001 - the pack is missing or unreadable: a failed stage, named
        stages.append(Stage("data", False, 0.0, f"{type(exc).__name__}: {exc}"[:110]))
    else:
        env = dict(os.environ, RTL_OUTPUT_DIR=str(out))
        if cpu_smoke:
            env["CUDA_VISIBLE_DEVICES"] = ""  # the smoke study runs on the CPU even where a GPU is visible
        logs = root / "logs"
        logs.mkdir(exist_ok=True)
        for name in ("pretrain", "evaluate", "analyze"):
            stages.append(run_stage(name, [name, "--config", str(config)], env, logs))
            if not stages[-1].ok:
                break
        else:
            stages += study_checks(out, expect_cuda=not cpu_smoke)
    device = torch.cuda.get_device_name(0) if cuda and not cpu_smoke else "the CPU (--cpu-smoke)"
    failed = any(not s.ok for s in stages)
    kept = keep or failed  # a failed check keeps its logs
    where = f"files under {root}" if kept else "temporary files removed"
    header = f"gpu-check on {device}: a study at the {sizes.profile} profile's settings, {where}"
    text = summary(stages, records(out), header)
    if not kept:
        shutil.rmtree(root, ignore_errors=True)
    return (1 if failed else 0), text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtl_core.bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="no GPU: run the study at smoke size on the CPU")
    parser.add_argument("--keep", default=None, help="a folder for the check's data, artifacts and logs (kept)")
    args = parser.parse_args(argv)
    status, text = check(args.cpu_smoke, args.keep)
    print(text, file=sys.stderr if status == NO_GPU else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())

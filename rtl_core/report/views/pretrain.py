"""10 · Pretraining: one row per pretrained encoder (method, pool, size, time, throughput, final loss) and its loss
and throughput curves, from the checkpoints' sidecars and Lightning's metrics.csv."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rtl_core.errors import RtlError
from rtl_core.paths import checkpoints_dir


def _sidecars(study: str) -> list[dict]:
    folder = checkpoints_dir(study)
    sidecars = []
    for path in sorted(folder.glob("*.json")):
        sidecar = json.loads(path.read_text())
        sidecar["encoder"] = path.stem
        sidecars.append(sidecar)
    if not sidecars:
        raise RtlError(f"No pretrained encoders for study {study!r} in {folder}; run `rtl pretrain` for it.")
    return sidecars


def curves(study: str) -> pd.DataFrame:
    """Per logged step of every run: encoder, step, epoch, loss, pairs/s (from Lightning's metrics.csv)."""
    frames = []
    for sidecar in _sidecars(study):
        path = Path(sidecar.get("run_dir", "")) / "metrics.csv"
        if path.is_file():
            frame = pd.read_csv(path)
            frames.append(frame.assign(encoder=sidecar["encoder"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def pretraining_table(study: str) -> pd.DataFrame:
    """One row per pretrained encoder: method, pool, size, epochs, steps, time, throughput and final loss."""
    data = curves(study)
    rows = []
    for s in _sidecars(study):
        part = data[data["encoder"] == s["encoder"]] if len(data) else data
        steps = part.dropna(subset=["pairs_per_s"]) if "pairs_per_s" in part else part
        epochs = part.dropna(subset=["loss_epoch"]) if "loss_epoch" in part else part
        rows.append(
            {
                "encoder": s["encoder"],
                "method": s.get("method"),
                "pool": s.get("pool"),
                "images": s.get("pool_images"),
                "epochs": s.get("epochs"),
                "steps": s.get("steps"),
                "batch": s.get("batch_size"),
                "crop px": s.get("crop_size"),
                "precision": s.get("precision"),
                "devices": s.get("devices"),
                "minutes": round(s.get("fit_seconds", 0) / 60, 2),
                "pairs/s (median)": round(float(steps["pairs_per_s"].median()), 1) if len(steps) else None,
                "final loss": round(float(epochs["loss_epoch"].iloc[-1]), 4) if len(epochs) else None,
                "commit": str(s.get("git_commit", ""))[:10],
            }
        )
    return pd.DataFrame(rows)


def curves_figure(study: str):
    """Loss per epoch and throughput per logged step, one line per encoder."""
    import matplotlib.pyplot as plt

    data = curves(study)
    fig, (loss_ax, speed_ax) = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, part in data.groupby("encoder", sort=False):
        epochs = part.dropna(subset=["loss_epoch"])
        loss_ax.plot(epochs["epoch"] + 1, epochs["loss_epoch"], marker="o", label=name)
        steps = part.dropna(subset=["pairs_per_s"])
        speed_ax.plot(steps["step"], steps["pairs_per_s"], label=name)
    loss_ax.set(xlabel="epoch", ylabel="SSL loss (epoch mean)", title="loss")
    speed_ax.set(xlabel="step", ylabel="pairs/s", title="throughput")
    loss_ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

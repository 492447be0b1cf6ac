"""The protocol pages (20-22), and what 23 · Segmentation and 90 · Summary borrow from them: per protocol the
task × init summary, the per-seed figure, every pair of inits compared (Welch, paired; Holm p where a comparison is
part of a claim), learning curves and the low-label figure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rtl_core.analysis.stats import compare_inits, format_p
from rtl_core.errors import RtlError
from rtl_core.paths import results_dir
from rtl_core.results import load_records, results_table

#: The protocol notebook's page per protocol: title and what the protocol asks (paper experiment in brackets).
PROTOCOL_PAGES: dict[str, tuple[str, str]] = {
    "finetune": (
        "20 · Full fine-tune",
        "Every layer trains (paper E1). Does the pretraining domain still matter once the whole network adapts?",
    ),
    "linear": (
        "21 · Linear evaluation",
        "Frozen encoder (BatchNorm in eval mode), linear head only (paper E4): how good are the pretrained "
        "features as they are?",
    ),
    "linear_bn_train": (
        "21 · Linear evaluation, BatchNorm in train mode",
        "Frozen weights whose BatchNorm statistics keep updating, linear head only (the paper's own linear "
        "protocol, E4).",
    ),
    "lowlabel_1": (
        "22 · Low-label fine-tune",
        "Fine-tunes on the nested 1 % (and 10 %) subsets of each training split, at least one image per "
        "class (paper E2).",
    ),
    "lowlabel_10": (
        "22 · Low-label fine-tune, 10 %",
        "Fine-tunes on the nested 10 % subset of each training split, at least one image per class (paper E2).",
    ),
}


def protocol_page(protocol: str) -> str:
    """The markdown heading and introduction of the protocol notebook for ``protocol``."""
    if protocol not in PROTOCOL_PAGES:
        raise RtlError(f"No protocol page for {protocol!r}; the protocol notebook knows {sorted(PROTOCOL_PAGES)}.")
    title, intro = PROTOCOL_PAGES[protocol]
    return f"# {title}\n\n{intro}"


def load(study: str) -> pd.DataFrame:
    """The tidy results of ``study`` (one row per run and metric)."""
    df = results_table(study)
    if df.empty:
        raise RtlError(f"No downstream results for study {study!r}; run `rtl evaluate` for it first.")
    return df


def protocol_summary(df: pd.DataFrame, protocol: str, metrics: str = "primary") -> pd.DataFrame:
    """Task × init table of ``mean ± SD (n runs)`` of each task's primary metric (or every metric); SD with ddof=1."""
    part = df[df["protocol"] == protocol]
    if metrics == "primary":
        part = part[part["primary"]]
    cells = part.groupby(["task", "metric", "init"], sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
    cells["value"] = [
        f"{m:.4f} ± {s:.4f} ({int(n)})" if n > 1 else f"{m:.4f} (1)"
        for m, s, n in zip(cells["mean"], cells["std"], cells["count"])
    ]
    return cells.pivot(index=["task", "metric"], columns="init", values="value").reset_index().rename_axis(columns=None)


def no_runs(protocol: str, what: str = "this study"):
    """A short HTML note for a table or figure of ``protocol`` that has no runs in ``what``."""
    from IPython.display import HTML

    return HTML(f"<p><i>No runs of protocol {protocol} in {what}.</i></p>")


def protocol_figure(df: pd.DataFrame, protocol: str):
    """Primary metric per init (one dot per seed, mean ± SD bar), one panel per task (a note when the protocol has
    no runs in ``df``)."""
    import seaborn as sns

    part = df[(df["protocol"] == protocol) & df["primary"]].copy()
    if part.empty:
        return no_runs(protocol, "these results")
    part["task · metric"] = part["task"] + " · " + part["metric"]
    grid = sns.catplot(
        data=part,
        x="init",
        y="value",
        col="task · metric",
        kind="strip",
        col_wrap=min(5, part["task"].nunique()),
        sharey=False,
        height=2.8,
        aspect=0.9,
        jitter=0.1,
        color="0.35",
        size=4,
    )
    grid.map_dataframe(sns.pointplot, x="init", y="value", errorbar="sd", color="C3", markers="_", linestyles="none")
    grid.set_xticklabels(rotation=30, ha="right")
    grid.set_titles("{col_name}")
    return grid.figure


def segmentation_tasks(config) -> list[str]:
    """The study's segmentation tasks (the demo's ct_liver_seg and any of the config's own)."""
    from rtl_core.data.study import task_kind

    return [t for t in config.evaluate.tasks if task_kind(config.data, t) == "segmentation"]


def claims(study: str) -> pd.DataFrame:
    """The study's judged claims (``claims.json``; empty before ``rtl claims`` ran), for :func:`protocol_stats`."""
    from rtl_core.analysis.claims import load_claims

    return load_claims(study)


def protocol_stats(
    df: pd.DataFrame, protocol: str, pairs: list[tuple[str, str]] | None = None, claims: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Every pair of inits on each task's primary metric: means ± SD (ddof=1), Δ (absolute and %), Welch's 95 % CI
    of Δ, Welch and paired p. Multiple-testing correction belongs to the claims: where a comparison is part of a
    claim (``claims`` from :func:`claims`), its Holm p within that claim's family is shown, the same number as on the
    claims page; the other comparisons are exploratory and shown uncorrected."""
    part = df[(df["protocol"] == protocol) & df["primary"]]
    inits = list(dict.fromkeys(part["init"]))
    pairs = pairs or [(a, b) for i, a in enumerate(inits) for b in inits[i + 1 :]]
    frames = []
    for a, b in pairs:
        try:
            frames.append(compare_inits(part, a, b, by=["task", "metric"]))
        except RtlError:
            continue
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    claim_p = _claim_lookup(claims, protocol)
    matched = [
        claim_p.get((t, m, a, b)) or claim_p.get((t, m, b, a))
        for t, m, a, b in zip(out["task"], out["metric"], out["init_a"], out["init_b"])
    ]
    return pd.DataFrame(
        {
            "task": out["task"],
            "metric": out["metric"],
            "A": out["init_a"],
            "B": out["init_b"],
            "A mean ± SD (ddof=1)": [f"{m:.4f} ± {s:.4f}" for m, s in zip(out["mean_a"], out["sd_a"])],
            "B mean ± SD (ddof=1)": [f"{m:.4f} ± {s:.4f}" for m, s in zip(out["mean_b"], out["sd_b"])],
            "Δ": out["delta_abs"].round(4),
            "Δ %": out["delta_rel_pct"].round(2),
            "95 % CI of Δ (Welch)": [
                f"[{lo:+.4f}, {hi:+.4f}]" for lo, hi in zip(out["welch_ci_low"], out["welch_ci_high"])
            ],
            "p Welch": [format_p(p) for p in out["welch_p"]],
            "p paired": [format_p(p) for p in out["paired_p"]],
            "claim": [m["claim"] if m else "– (exploratory)" for m in matched],
            "p Holm (claim family)": [format_p(m["p_holm"]) if m else "–" for m in matched],
            "verdict": [m["verdict"] if m else "–" for m in matched],
            "runs": [f"{a} vs {b}" for a, b in zip(out["n_a"], out["n_b"])],
        }
    )


def _claim_lookup(claims: pd.DataFrame | None, protocol: str) -> dict[tuple, dict]:
    if claims is None or not len(claims):
        return {}
    part = claims[claims["protocol"] == protocol]
    return {(r["task"], r["metric"], r["arm_a"], r["arm_b"]): r for r in part.to_dict("records")}


def curves(study: str, protocol: str) -> pd.DataFrame:
    """Learning curves of every run of ``protocol``: one row per (run, epoch) with train loss and val metric."""
    rows = []
    for record in load_records(results_dir(study)):
        if record["protocol"] != protocol:
            continue
        c = record.get("curves") or {}
        val_key = next((k for k in c if k.startswith("val_")), None)
        for i, epoch in enumerate(c.get("epoch", [])):
            rows.append(
                {
                    "task": record["task"],
                    "init": record["init"],
                    "seed": record["seed"],
                    "epoch": epoch,
                    "train_loss": c["train_loss"][i],
                    "val": c[val_key][i] if val_key and c[val_key][i] is not None else np.nan,
                }
            )
    return pd.DataFrame(rows)


def curves_figure(study: str, protocol: str):
    """Training loss per epoch (mean over seeds, band = SD) per init, one panel per task; with validation after
    every epoch (``evaluate.learning_curves``) a second row shows the validation primary metric per epoch, the
    evidence that a run has converged by the epoch it is tested at."""
    import seaborn as sns

    data = curves(study, protocol)
    if data.empty:
        return None
    per_run = data.dropna(subset=["val"]).groupby(["task", "init", "seed"]).size()
    if len(per_run) and per_run.min() > 1:
        long = data.melt(
            id_vars=["task", "init", "seed", "epoch"],
            value_vars=["train_loss", "val"],
            var_name="curve",
            value_name="value",
        )
        long["curve"] = long["curve"].map({"train_loss": "train loss", "val": "validation (primary metric)"})
        grid = sns.relplot(
            data=long,
            x="epoch",
            y="value",
            hue="init",
            col="task",
            row="curve",
            kind="line",
            errorbar="sd",
            height=2.4,
            aspect=1.0,
            facet_kws={"sharey": False},
        )
        grid.set_titles("{col_name} · {row_name}")
        return grid.figure
    grid = sns.relplot(
        data=data,
        x="epoch",
        y="train_loss",
        hue="init",
        col="task",
        kind="line",
        errorbar="sd",
        col_wrap=min(5, data["task"].nunique()),
        height=2.6,
        aspect=1.0,
        facet_kws={"sharey": False},
    )
    grid.set_titles("{col_name}")
    return grid.figure


def fraction_figure(df: pd.DataFrame, protocols: tuple[str, ...] = ("lowlabel_1", "lowlabel_10", "finetune")):
    """Primary metric against the share of training labels (1 %, 10 %, 100 %) per init, one panel per task."""
    import seaborn as sns

    part = df[df["protocol"].isin(protocols) & df["primary"]].copy()
    if part.empty:
        return no_runs(" / ".join(protocols), "these results")
    part["labels (%)"] = (part["data_fraction"] * 100).round(1)
    grid = sns.relplot(
        data=part,
        x="labels (%)",
        y="value",
        hue="init",
        col="task",
        kind="line",
        marker="o",
        errorbar="sd",
        col_wrap=min(5, part["task"].nunique()),
        height=2.6,
        facet_kws={"sharey": False},
    )
    for ax in grid.axes.flat:
        ax.set_xscale("log")
    grid.set_titles("{col_name}")
    return grid.figure


def labels_figure(df: pd.DataFrame, protocol: str):
    """For a low-label protocol, a "Labels vs performance" heading and :func:`fraction_figure`; else nothing."""
    if not protocol.startswith("lowlabel"):
        return None
    from IPython.display import Markdown, display

    display(Markdown("## Labels vs performance\n\nPrimary metric against the share of training labels."))
    return fraction_figure(df)


def main_protocol(config) -> str:
    """The protocol a page leads with: ``finetune`` when the study ran it, else its first protocol."""
    protocols = list(config.evaluate.protocols)
    return "finetune" if "finetune" in protocols or not protocols else protocols[0]

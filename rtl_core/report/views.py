"""Tables and figures of downstream results, per protocol (used by the protocol notebook, 23 and 90)."""

from __future__ import annotations

from collections import Counter

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


# --------------------------------------------------------------------------------------------- tables for readers
def table(frame: pd.DataFrame):
    """``frame`` as a reader should see it (HTML): no index column, whole numbers as integers, ``–`` for a
    missing cell."""
    from IPython.display import HTML

    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_float_dtype(values):
            present = values.dropna()
            if len(present) and bool((present == present.round()).all()):
                out[column] = pd.Series([None if pd.isna(v) else int(v) for v in values], index=out.index, dtype=object)
    out = out.astype(object).where(out.notna(), "–")
    return HTML(out.to_html(index=False, border=0, escape=True))


# --------------------------------------------------------------------------------------------- the data page
def study_has_own_data(config) -> bool:
    """Whether the study brings its own pools or tasks (``data.pools`` / ``data.tasks``)."""
    return bool(config.data.pools or config.data.tasks)


def demo_data_used(config) -> tuple[list[str], list[str]]:
    """The demo pack's tasks and pools the data page shows: all of them for a study on the demo suite only; for a
    study with its own data, the demo tasks and pools it uses (pretrains on, evaluates on or holds an init of)."""
    from rtl_core.data.registry import TASKS
    from rtl_core.names import DEMO_POOLS, parse_init

    if not study_has_own_data(config):
        return list(TASKS), list(DEMO_POOLS)
    tasks = [t for t in TASKS if t in config.evaluate.tasks]
    used = set(config.pretrain.pools)
    for name in config.evaluate.inits:
        init = parse_init(name)
        if init.ours:
            used |= {init.pool} | ({"natural"} if init.kind == "sequential" else set())
    return tasks, [p for p in DEMO_POOLS if p in used]


def own_data_section(config):
    """The data page's first section for a study with its own pools and tasks: heading and table (one row per
    pool and task, as the study resolves them); None for a study on the demo suite only."""
    from IPython.display import Markdown, display

    from rtl_core.data.study import study_data_table

    if not study_has_own_data(config):
        return None
    display(
        Markdown(
            f"## Study {config.study}: its own pools and tasks\n\n"
            "As the study resolves them: split sizes, patient / scan groups, and how many of a pool's files were "
            "left out because they are val/test images of one of its tasks."
        )
    )
    return table(study_data_table(config))


def _display_image(image) -> np.ndarray:
    """An image tensor ``(3, S, S)`` (uint8, or float in [0, 1]) as an ``(S, S, 3)`` float array for imshow."""
    import torch

    x = image.float() / 255 if image.dtype == torch.uint8 else image.float()
    return x.clamp(0, 1).permute(1, 2, 0).numpy()


def own_data_samples(config, per_row: int = 8, seed: int = 0):
    """Random training images of each of the study's own tasks (caption: class, or foreground share) and of each
    of its own pools, as the model sees them; None for a study on the demo suite only."""
    import matplotlib.pyplot as plt

    from rtl_core.data.study import study_pool, study_task

    if not study_has_own_data(config):
        return None
    size = config.data.image_size
    rows: list[tuple[str, list[np.ndarray], list[str]]] = []
    rng = np.random.default_rng(seed)
    for name in config.data.tasks:
        task = study_task(config.data, name, size, config.data.split_seed)
        pick = np.sort(rng.choice(len(task.train), min(per_row, len(task.train)), replace=False))
        images = [_display_image(task.train.images[i]) for i in pick]
        targets = task.train.targets
        if task.kind == "classification" and targets is not None:
            names = task.class_names or ()
            labels = [int(targets[i]) for i in pick]
            captions = [str(names[k])[:18] if k < len(names) else str(k) for k in labels]
        else:
            captions = [f"mask {100 * float((targets[i] > 0).float().mean()):.0f}%" for i in pick]
        rows.append((name, images, captions))
    for name in config.data.pools:
        pool = study_pool(config, name)
        pick = np.sort(rng.choice(len(pool), min(per_row, len(pool)), replace=False))
        items = [pool[int(i)] for i in pick]
        images = [_display_image(item[0] if isinstance(item, (tuple, list)) else item) for item in items]
        rows.append((name, images, ["pool"] * len(images)))
    fig, axes = plt.subplots(len(rows), per_row, figsize=(per_row * 1.2, len(rows) * 1.35), squeeze=False)
    for r, (name, images, captions) in enumerate(rows):
        for c in range(per_row):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c], cmap="gray")
                ax.set_title(captions[c], fontsize=6)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value (the inline backend would show an open figure a second time)
    return fig


def demo_data_intro(config):
    """The heading of the demo pack's part of the data page (after the study's own data), or the line saying the
    study uses none of it."""
    from IPython.display import Markdown

    tasks, pools = demo_data_used(config)
    if not study_has_own_data(config):
        return Markdown("## The demo pack\n\nThe study's tasks and pretraining pools, all from the bundled data pack.")
    if not tasks and not pools:
        return Markdown(
            "## The demo pack\n\nThis study uses none of the demo pack's tasks and pools; they are not shown "
            "(`rtl summary` lists them)."
        )
    return Markdown(
        "## The demo pack\n\nThe demo pack's tasks and pools this study uses as well: "
        + ", ".join(f"`{n}`" for n in tasks + pools)
        + "."
    )


# --------------------------------------------------------------------------------------------- claims
#: The paper verdict the claims engine gives a row of a study's own question (not one of the paper's claims).
OWN_QUESTION = "not a paper claim"


def _own(rows: pd.DataFrame) -> pd.Series:
    """Which rows belong to the study's own questions (claims rows, or a table of :func:`display_table`)."""
    for column in ("paper_verdict", "paper verdict"):
        if column in rows:
            return rows[column] == OWN_QUESTION
    return pd.Series(False, index=rows.index)


def split_questions(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of the study's own questions and those of the paper's claims (claims rows, or a table of
    :func:`verdict_table` / the index page's), each in its order."""
    own = _own(rows)
    return rows[own].reset_index(drop=True), rows[~own].reset_index(drop=True)


def without_paper(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` without the paper's columns (for a study's own questions, which are no paper claim)."""
    return frame[[c for c in frame.columns if not str(c).startswith("paper")]]


def verdict_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The claims table of 90 · Summary: :func:`~rtl_core.analysis.claims.display_table` (per verdict the arm
    ahead, Δ absolute and %, scope, K × D, flags) with the paper side's flags beside its verdict."""
    from rtl_core.analysis.claims import display_table

    out = display_table(rows)
    if "paper verdict" in out and "paper_flags" in rows:
        flags = [f if isinstance(f, str) and f else "–" for f in rows["paper_flags"]]
        out.insert(out.columns.get_loc("paper verdict") + 1, "paper flags", flags)
    return out


def _flag_kinds(flags: object) -> list[str]:
    """The kinds of the flags of one row (``changed after the runs``, ``degenerate``, ``outlying runs``)."""
    from rtl_core.analysis.claims import CHANGED

    if not isinstance(flags, str) or flags in ("", "–"):
        return []
    kinds = []
    for flag in flags.split(" | "):
        if flag.startswith(CHANGED):
            kinds.append(CHANGED)
        elif flag.startswith("degenerate"):
            kinds.append("degenerate")
        elif "robust SDs" in flag:
            kinds.append("outlying runs")
        else:
            kinds.append(flag.split(":")[0])
    return kinds


def overview_details(overview: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``overview`` (one line per claim) with, from ``table`` (its rows as :func:`verdict_table` or the index page
    shows them), the K × D its rows ran at and how many of its rows carry each flag, after ``scope``."""
    out = overview.copy()
    designs, flags = [], []
    for claim in out["claim"]:
        part = table[table["claim"] == claim]
        kd = [str(v) for v in dict.fromkeys(part["K × D"]) if v != "–"] if "K × D" in part else []
        designs.append(", ".join(kd) or "–")
        counts = Counter(k for f in part.get("flags", []) for k in _flag_kinds(f))  # in order of appearance
        flags.append(", ".join(f"{k} ×{n}" if n > 1 else k for k, n in counts.items()) or "–")
    at = out.columns.get_loc("scope") + 1 if "scope" in out else len(out.columns)
    out.insert(at, "K × D", designs)
    out.insert(at + 1, "flags", flags)
    return out


def split_claims(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The claims rows that apply to the study (judged, withheld; the study's own questions first, then the
    paper's claims) and those it did not run (it lacks their arms, tasks or protocols)."""
    if not len(rows):
        return rows, rows
    rows = pd.concat([rows[_own(rows)], rows[~_own(rows)]])
    not_run = rows["verdict"] == "not run"
    return rows[~not_run].reset_index(drop=True), rows[not_run].reset_index(drop=True)


def not_run_note(rows: pd.DataFrame, where: str = "below") -> str | None:
    """One sentence on the paper's claims this study did not run (None when it ran them all): none apply, or how
    many rows and which claims are left out of the tables, and where they are listed."""
    if len(rows):
        rows = rows[~_own(rows)]
    shown, not_run = split_claims(rows)
    if not len(not_run):
        return None
    claims = list(dict.fromkeys(not_run["claim"]))
    reasons = list(dict.fromkeys(str(r) for r in not_run["reason"] if r))
    example = f"; e.g. {reasons[0]}" if reasons else ""
    if not len(shown):
        return (
            f"None of the paper's claims ({len(claims)}) applies to this study (it lacks their arms, tasks or "
            f"protocols{example}): all {len(not_run)} of their rows are 'not run'. They are listed {where}."
        )
    whole = [c for c in claims if c not in set(shown["claim"])]
    return (
        f"{len(not_run)} row(s) of the paper's claims are not run in this study (it lacks their arms, tasks or "
        f"protocols{example})"
        + (f"; no row of claim(s) {', '.join(whole)} applies" if whole else "")
        + f". They are listed {where}."
    )


def variance_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per task × protocol (each task's primary metric): the variance between encoders (pretraining runs) and
    between downstream seeds (:func:`rtl_core.analysis.replicates.variance_components`), each with its SD, and the
    share between encoders. With one pretraining run per init (K = 1) the between-encoder component cannot be
    estimated, and the table says so."""
    from rtl_core.analysis.replicates import variance_components

    vc = variance_components(results, by=("task", "protocol", "metric"))
    if vc.empty:
        return vc

    def component(v: float, k1: bool = False) -> str:
        if not np.isfinite(v):
            return "cannot be estimated (K = 1)" if k1 else "–"
        return f"{v:.3g} (SD {np.sqrt(v):.3g})"

    return pd.DataFrame(
        {
            "task": vc["task"],
            "protocol": vc["protocol"],
            "metric": vc["metric"],
            "replicated inits (K ≥ 2)": vc["replicated_inits"],
            "encoders": vc["encoders"],
            "D (seeds per encoder)": vc["d"],
            "σ² between encoders": [
                component(v, k1=r == "–") for v, r in zip(vc["var_encoder"], vc["replicated_inits"])
            ],
            "σ² between seeds": [component(v) for v in vc["var_seed"]],
            "share between encoders": [f"{v:.2f}" if np.isfinite(v) else "–" for v in vc["icc"]],
        }
    )


def variance_note(table: pd.DataFrame) -> str:
    """One sentence on :func:`variance_table`: what the between-encoder component rests on, or that it cannot be
    estimated where every init has one pretraining run (K = 1)."""
    if table.empty:
        return "No runs to estimate variance components from."
    single = table["replicated inits (K ≥ 2)"] == "–"
    k1 = (
        "the between-encoder component cannot be estimated with one pretraining per arm: the variance between "
        "pretraining runs, the larger one in SSL, is not seen, and a verdict there is about these checkpoints (set "
        "pretrain.replicates: K ≥ 2 to see it)"
    )
    if single.all():
        return f"Every init has one pretraining run (K = 1): {k1}."
    if single.any():
        return (
            f"{int(single.sum())} of {len(table)} task × protocol cell(s) have no replicated init (K = 1): {k1}. "
            "Elsewhere σ² between encoders is pooled over the inits with K ≥ 2."
        )
    return "σ² between encoders is pooled over the inits with K ≥ 2; σ² between seeds over every encoder's runs."


def main_protocol(config) -> str:
    """The protocol a page leads with: ``finetune`` when the study ran it, else its first protocol."""
    protocols = list(config.evaluate.protocols)
    return "finetune" if "finetune" in protocols or not protocols else protocols[0]

"""The study's verdict: the paper's headline comparisons next to ours, one verdict per claim.

The paper's claims (Jonske et al., CMPB 2025, abstract and Sec. 4), each tested on our data by comparing the
CT-pretrained with the natural-image-pretrained encoder (Welch's t-test as the paper, Holm-corrected across
the family):

1. full fine-tuning: in-domain (CT) pretraining gives no clear advantage over natural-image pretraining;
2. linear evaluation: CT pretraining gives better frozen features on CT tasks;
3. low-label fine-tuning (1 %): CT pretraining helps where labels are scarce (a small, uncertain advantage);
4. the features are domain-specific (checked in the feature-space analysis, not here).

The paper's numbers come from its own runs (``paper_runs.csv``, RadNet-1.28M vs ImageNet on RadNet-CTBR). The
abstract's headline (+0.44 %, p = 0.541; +2.07 %, p = 0.025; +1.63 %, p = 0.114) compares ImageNet with an
interpolated "RadNet-1.28M (UB-adjusted)" population; it is quoted, not recomputed.
"""

from __future__ import annotations

import pandas as pd

from rtl_core.analysis.paper_reference import load_paper_runs
from rtl_core.analysis.stats import compare_inits, format_p

#: claim id -> (our protocol, paper experiment / data fraction, the abstract's quoted numbers, claim text)
CLAIMS = {
    "finetune": ("finetune", ("E1", 1.0), "+0.44 %, p = 0.541", "Full fine-tune: CT pretraining is no better than natural images"),
    "linear": ("linear", ("E4", 1.0), "+2.07 %, p = 0.025", "Linear evaluation: CT pretraining gives better frozen features for CT"),
    "lowlabel_1": ("lowlabel_1", ("E2", 0.01), "+1.63 %, p = 0.114", "1 % labels: CT pretraining helps a little where labels are scarce"),
}
CT_TASKS = ("ct_cls", "ct_liver_seg")


def paper_rows() -> pd.DataFrame:
    """The paper's own RadNet-1.28M vs ImageNet comparisons on RadNet-CTBR accuracy (E1, E4, E2 1 %)."""
    runs = load_paper_runs()
    runs = runs[(runs["task"] == "RadNet-CTBR") & (runs["metric"] == "accuracy")]
    cmp = compare_inits(runs, "RadNet-1.28M", "ImageNet", by=["experiment", "data_fraction", "metric"])
    rows = []
    for claim, (_, (experiment, fraction), quoted, text) in CLAIMS.items():
        hit = cmp[(cmp["experiment"] == experiment) & (cmp["data_fraction"] == fraction)]
        if hit.empty:
            continue
        r = hit.iloc[0]
        rows.append({"claim": claim, "paper_delta_pct": r["delta_rel_pct"], "paper_welch_p": r["welch_p"],
                     "paper_runs": f"{int(r['n_a'])} vs {int(r['n_b'])}", "abstract_quoted": quoted})
    return pd.DataFrame(rows)


def our_rows(results: pd.DataFrame, tasks: tuple[str, ...] = CT_TASKS, ct: str = "ssl:ct:simclr",
             natural: str = "ssl:natural:simclr") -> pd.DataFrame:
    """Our CT vs natural comparisons on ``tasks``, each task's primary metric, Holm across the family."""
    wanted = results[results["task"].isin(tasks) & results["init"].isin([ct, natural]) & results["primary"]]
    if wanted.empty:
        return pd.DataFrame()
    return compare_inits(wanted, ct, natural, by=["protocol", "task", "data_fraction", "metric"])


def verdict(delta: float, p_holm: float, claim: str) -> str:
    """A verdict on one claim from the sign of Δ (CT − natural) and the Holm-corrected Welch p-value."""
    significant = p_holm < 0.05
    if claim == "finetune":
        if not significant:
            return "agrees: no significant difference"
        return "disagrees: CT better" if delta > 0 else "disagrees: natural better"
    if significant:
        return "agrees: CT significantly better" if delta > 0 else "disagrees: natural significantly better"
    return "not shown: difference not significant" + (" (CT ahead)" if delta > 0 else " (natural ahead)")


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (claim, CT task): our Δ and p beside the paper's, and the verdict."""
    paper = paper_rows().set_index("claim")
    ours = our_rows(results)
    rows = []
    for claim, (protocol, *_rest) in CLAIMS.items():
        text = CLAIMS[claim][3]
        part = ours[ours["protocol"] == protocol] if len(ours) else ours
        for _, r in part.iterrows():
            rows.append({
                "claim": text, "task": r["task"], "metric": r["metric"],
                "ours CT": f"{r['mean_a']:.4f} ± {r['sd_a']:.4f}", "ours natural": f"{r['mean_b']:.4f} ± {r['sd_b']:.4f}",
                "ours Δ %": round(r["delta_rel_pct"], 2), "ours p (Welch)": format_p(r["welch_p"]),
                "ours p (Holm)": format_p(r["p_holm"]), "runs": f"{r['n_a']} vs {r['n_b']}",
                "paper Δ %": round(paper.loc[claim, "paper_delta_pct"], 3) if claim in paper.index else None,
                "paper p (Welch)": format_p(paper.loc[claim, "paper_welch_p"]) if claim in paper.index else None,
                "abstract (interpolated)": CLAIMS[claim][2],
                "verdict": verdict(r["delta_abs"], r["p_holm"], claim),
            })
    return pd.DataFrame(rows)


def verdict_figure(results: pd.DataFrame):
    """Δ % (CT vs natural) per claim and CT task with its bootstrap 95 % CI (relative to the natural mean), beside the
    paper's Δ % from its own runs."""
    import matplotlib.pyplot as plt

    ours = our_rows(results)
    paper = paper_rows().set_index("claim")
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * max(len(ours), 1) + 1.4))
    labels = []
    for y, (_, r) in enumerate(ours.iterrows()):
        claim = next(c for c, spec in CLAIMS.items() if spec[0] == r["protocol"])
        scale = 100 / r["mean_b"] if r["mean_b"] else float("nan")
        ax.errorbar(r["delta_rel_pct"], y, xerr=[[r["delta_abs"] * scale - r["ci_low"] * scale],
                                                 [r["ci_high"] * scale - r["delta_abs"] * scale]],
                    fmt="o", color="C0", capsize=3, label="ours (95 % CI)" if y == 0 else None)
        if claim in paper.index:
            ax.plot(paper.loc[claim, "paper_delta_pct"], y, "D", color="C3", label="paper (its runs)" if y == 0 else None)
        labels.append(f"{r['protocol']} · {r['task']}")
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("Δ % = (CT / natural − 1) · 100")
    ax.legend(fontsize=8, loc="best")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig

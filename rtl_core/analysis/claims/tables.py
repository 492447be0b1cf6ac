"""The tidy run tables the engine judges: ours (the results store) and the paper's (``paper_runs.csv``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from rtl_core.analysis.replicates import with_replicate

#: The columns of a table the engine reads (``replicate`` 0 where a table has none: one encoder per init).
COLUMNS = ["task", "protocol", "init", "replicate", "seed", "metric", "value", "primary"]


def paper_table(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's runs as a tidy table for the engine: ``load_paper_runs`` plus ``dice_mean`` (BraTS' three class
    Dice scores averaged per run) and, for E6/E8, the ImageNet / RadNet-1.28M runs of E1/E4 that the source lists
    again verbatim (``load_paper_runs`` drops those copies so that nothing is pooled twice)."""
    from rtl_core.analysis.paper_reference import COPIED_FROM, COPIED_INITS, load_paper_runs

    runs = load_paper_runs(path)
    dice = runs[runs["task"].eq("BraTS") & runs["metric"].str.startswith("dice_c")]
    if len(dice):
        keys = ["experiment", "protocol", "task", "data_fraction", "init", "seed"]
        mean = (
            dice.groupby(keys, as_index=False)["value"]
            .mean()
            .assign(metric="dice_mean", source_path="mean of dice_c1..3")
        )
        runs = pd.concat([runs, mean[runs.columns]], ignore_index=True)
    copies = []
    for experiment, source in COPIED_FROM.items():
        tasks = runs.loc[runs["experiment"] == experiment, "task"].unique()
        reused = runs[(runs["experiment"] == source) & runs["init"].isin(COPIED_INITS) & runs["task"].isin(tasks)]
        copies.append(reused.assign(experiment=experiment))
    return with_replicate(pd.concat([runs, *copies], ignore_index=True))


def our_table(results: pd.DataFrame, reuse: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our runs for the engine: each run's primary metric (``metric`` kept, ``primary`` True; ``replicate`` 0 where
    the results carry none) plus the per-seed weight-space feature reuse of the fine-tuned encoders (``metric`` =
    ``weight_cka:<layer>``)."""
    parts = [with_replicate(results).loc[results["primary"].astype(bool), COLUMNS]] if len(results) else []
    if reuse is not None and len(reuse):
        seeds = reuse["run"].astype(str).str.removeprefix("seed")
        ok = seeds.str.fullmatch(r"-?\d+")
        part = with_replicate(reuse[ok]).assign(
            protocol="finetune",
            seed=seeds[ok].astype(int),
            metric="weight_cka:" + reuse["layer"],
            value=reuse["weight_cka"],
            primary=False,
        )
        parts.append(part[COLUMNS])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)


def current_results(config, results: pd.DataFrame) -> pd.DataFrame:
    """The runs a verdict may use: made with the config's current run settings and one of its seeds (older
    records of other settings or dropped seeds stay on disk but are never pooled). With ``evaluate.precision: auto``
    a grid run on GPUs (bf16) is judged on a machine without them: of the precisions ``auto`` can resolve to, the one
    with the most runs is used, and runs of the other precision are never pooled with it."""
    from rtl_core.evaluate.runner import settings_hashes

    if results.empty or "settings_hash" not in results:
        return results
    seeds = results["seed"].isin(config.evaluate.seeds)
    counts = {h: int(((results["settings_hash"] == h) & seeds).sum()) for h in settings_hashes(config).values()}
    best = max(counts, key=lambda h: counts[h])
    kept = results[(results["settings_hash"] == best) & seeds]
    dropped = int(len(results) - len(kept))
    if dropped:
        precision = {h: p for p, h in settings_hashes(config).items()}[best]
        logging.getLogger(__name__).info(
            "claims: %d result rows of other settings, precisions or seeds are not pooled (kept %d rows made in %s)",
            dropped,
            len(kept),
            precision,
        )
    return kept


def read_csv(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None

"""90 · Summary's variance components: between encoders (pretraining runs) and between downstream seeds, per task
× protocol, and the sentence that says what they rest on."""

from __future__ import annotations

import numpy as np
import pandas as pd


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

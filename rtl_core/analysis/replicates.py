"""The unit of replication: pretraining runs (encoders), each evaluated with downstream seeds.

A results table may carry ``replicate``, the index of the pretraining run an init's encoder came from
(``pretrain.replicates``); a table without it has one encoder per init (``replicate`` 0). An *encoder* is one
``(init, replicate)``; an arm (a set of inits) has K encoders, each with D downstream runs (seeds).

* With K ≥ 2 an arm enters a test as its K encoder means: the variance between pretraining runs is then part of
  the error, and a verdict speaks about the pretraining (recipe), not about one lucky checkpoint.
* With K = 1 the arm's runs are downstream seeds of one encoder: a verdict on them is about that checkpoint.
* A fixed checkpoint (``scratch``, ``torchvision:``, ``file:``) has no pretraining variance to sample: against a
  replicated arm it enters with its runs, and the verdict compares a pretraining recipe with that checkpoint.

:func:`compare_units` gives both tests (the verdict's, on the units above, and the run-level one that pools every
run as if independent), the scope (``pretraining`` or ``checkpoints``), K and D, the variance components and a
linear mixed model (statsmodels ``MixedLM``, ``value ~ arm + (1 | encoder)``) as the sensitivity check.
:func:`variance_components` tabulates the components per task × protocol × metric for a whole study.

Variance components are the one-way ANOVA (method-of-moments) estimates within each arm: σ²_seed is the pooled
variance of runs around their encoder's mean, σ²_encoder = max(0, MS_between − σ²_seed) / D̄ over arms with K ≥ 2
(for a balanced design the REML estimate of the mixed model, when positive).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from rtl_core.analysis.stats import welch_ci, welch_ttest
from rtl_core.errors import ConfigError

#: Init kinds with no pretraining of this study behind them: nothing to replicate.
FIXED_KINDS = ("scratch", "torchvision", "file")
#: A run further than this many robust SDs (1.4826 · MAD) from its arm's median is flagged (never dropped).
OUTLIER_Z = 3.0


def is_fixed(init: str) -> bool:
    """Whether ``init`` is a fixed checkpoint (scratch, torchvision, file) rather than a pretraining of this study.
    Names outside the init grammar (the paper's ``ImageNet``, ``RadNet-1.28M``) are pretrainings with one run."""
    from rtl_core.names import parse_init

    try:
        return parse_init(init).kind in FIXED_KINDS
    except ConfigError:
        return False


def with_replicate(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with an integer ``replicate`` column (0 where the table has none or leaves it empty)."""
    if "replicate" not in table.columns:
        return table.assign(replicate=0)
    return table.assign(replicate=pd.to_numeric(table["replicate"], errors="coerce").fillna(0).astype(int))


def encoder_means(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per encoder ``(init, replicate)``: its mean over downstream runs and the number of runs ``d``."""
    g = with_replicate(runs).groupby(["init", "replicate"], sort=True)["value"]
    return g.agg(mean="mean", d="count").reset_index()


def _units(runs: pd.DataFrame) -> tuple[np.ndarray, int]:
    """An arm's units: its encoder means with K ≥ 2 encoders, else its runs; and K."""
    enc = encoder_means(runs)
    k = len(enc)
    if k >= 2:
        return enc["mean"].to_numpy(float), k
    return runs["value"].to_numpy(float), k


def components(arms: Sequence[pd.DataFrame]) -> tuple[float, float]:
    """(σ²_encoder, σ²_seed) pooled over ``arms`` (each a table of runs with ``init``, ``replicate``, ``value``):
    one-way ANOVA within each arm; NaN where not estimable (σ²_encoder needs an arm with K ≥ 2)."""
    ss_within = df_within = ss_between = df_between = n0_sum = 0.0
    for runs in arms:
        if runs.empty:
            continue
        runs = with_replicate(runs)
        enc = runs.groupby(["init", "replicate"])["value"]
        ss_within += float(((runs["value"] - enc.transform("mean")) ** 2).sum())
        df_within += float(len(runs) - enc.ngroups)
        if enc.ngroups >= 2:
            per = enc.agg(["mean", "count"])
            grand, n = float(runs["value"].mean()), float(per["count"].sum())
            ss_between += float((per["count"] * (per["mean"] - grand) ** 2).sum())
            df_between += per.shape[0] - 1
            n0_sum += n - float((per["count"] ** 2).sum()) / n  # the unbalanced one-way ANOVA's n0, per arm
    var_seed = ss_within / df_within if df_within > 0 else math.nan
    if df_between <= 0:
        return math.nan, var_seed
    d_bar = n0_sum / df_between
    seed = var_seed if np.isfinite(var_seed) else 0.0
    return max(0.0, (ss_between / df_between - seed) / d_bar), var_seed


def mixed_model_p(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """p of the arm effect in ``value ~ arm + (1 | encoder)`` (statsmodels ``MixedLM``, REML); NaN when it cannot
    be fitted (fewer than 3 encoders, no arm with 2, a singular fit)."""
    import statsmodels.formula.api as smf

    data = pd.concat([with_replicate(a).assign(arm="a"), with_replicate(b).assign(arm="b")], ignore_index=True)
    data["encoder"] = data["arm"] + "|" + data["init"].astype(str) + "|" + data["replicate"].astype(str)
    if data["encoder"].nunique() < 3 or data.groupby("arm")["encoder"].nunique().max() < 2:
        return math.nan
    if data.groupby("encoder").size().max() < 2:
        return math.nan  # one run per encoder: encoder and residual variance cannot be told apart
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = smf.mixedlm("value ~ C(arm)", data, groups=data["encoder"]).fit(reml=True)
            p = float(fit.pvalues["C(arm)[T.b]"])
        except (ValueError, np.linalg.LinAlgError, KeyError):
            return math.nan
    return p if np.isfinite(p) else math.nan


def compare_units(a: pd.DataFrame, b: pd.DataFrame, confidence: float) -> dict[str, Any]:
    """Arm ``a`` against arm ``b`` (runs with ``init``, ``seed``, ``value`` and maybe ``replicate``) on their units.

    Returns n (units), K, D, mean, SD (ddof=1), Δ = A − B, Welch CI and p on the units; ``p_checkpoints``, the
    Welch p over every run as if independent; ``p_mixed``; ``var_encoder``/``var_seed``; ``scope`` and
    ``scope_note``; ``undefined`` (why no test, else None); ``_a``/``_b``, the unit values."""
    a, b = with_replicate(a), with_replicate(b)
    runs_a, runs_b = a["value"].to_numpy(float), b["value"].to_numpy(float)
    bad = int((~np.isfinite(runs_a)).sum() + (~np.isfinite(runs_b)).sum())
    a, b = a[np.isfinite(runs_a)], b[np.isfinite(runs_b)]
    (ua, ka), (ub, kb) = _units(a), _units(b)
    per_encoder = pd.concat([encoder_means(a)["d"], encoder_means(b)["d"]])
    fixed_a = bool(len(a)) and all(is_fixed(i) for i in a["init"].unique())
    fixed_b = bool(len(b)) and all(is_fixed(i) for i in b["init"].unique())
    out: dict[str, Any] = {
        "n_a": len(ua),
        "n_b": len(ub),
        "k_a": ka,
        "k_b": kb,
        "d": int(per_encoder.min()) if len(per_encoder) else 0,
        "mean_a": float(ua.mean()) if len(ua) else math.nan,
        "mean_b": float(ub.mean()) if len(ub) else math.nan,
        "sd_a": float(ua.std(ddof=1)) if len(ua) > 1 else math.nan,
        "sd_b": float(ub.std(ddof=1)) if len(ub) > 1 else math.nan,
    }
    out["delta_abs"] = out["mean_a"] - out["mean_b"] if len(ua) and len(ub) else math.nan
    out["delta_rel_pct"] = (
        (out["mean_a"] / out["mean_b"] - 1) * 100 if len(ua) and len(ub) and out["mean_b"] else math.nan
    )
    out["var_encoder"], out["var_seed"] = components([a, b])
    out["scope"], out["scope_note"] = _scope(a, b, ka, kb, fixed_a, fixed_b, out["d"]) if ka and kb else (None, None)
    out.update(ci_low=math.nan, ci_high=math.nan, p_welch=math.nan, p_checkpoints=math.nan, p_mixed=math.nan)
    out.update(undefined=None, _a=ua, _b=ub)
    if bad:
        out["undefined"] = f"{bad} run value(s) are NaN or infinite: the test would silently drop them"
    elif len(ua) < 2 or len(ub) < 2:
        out["undefined"] = (
            f"fewer than 2 units in an arm ({len(ua)} vs {len(ub)}); a t-test needs at least 2 per arm"
            if max(ka, kb) >= 2
            else f"fewer than 2 runs in an arm ({len(ua)} vs {len(ub)}); a t-test needs at least 2 per arm"
        )
    elif np.ptp(ua) == 0 and np.ptp(ub) == 0:
        out["undefined"] = "both arms have zero variance (every run gave the same value): the t-test is undefined"
    else:
        _, _, p = welch_ttest(ua, ub)
        if not np.isfinite(p):
            out["undefined"] = "Welch's t-test returned NaN"
        else:
            out["p_welch"] = p
            out["ci_low"], out["ci_high"] = welch_ci(ua, ub, confidence)
            ra, rb = a["value"].to_numpy(float), b["value"].to_numpy(float)
            out["p_checkpoints"] = p if max(ka, kb) < 2 else _quiet_welch(ra, rb)
            if max(ka, kb) >= 2:
                out["p_mixed"] = mixed_model_p(a, b)
    return out


def _quiet_welch(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return math.nan
    return float(welch_ttest(a, b)[2])


def _scope(a: pd.DataFrame, b: pd.DataFrame, ka: int, kb: int, fixed_a: bool, fixed_b: bool, d: int) -> tuple[str, str]:
    """``pretraining`` when every arm that is a pretraining has K ≥ 2 encoders (and one is), else ``checkpoints``."""
    name_a = "+".join(sorted(a["init"].astype(str).unique())) or "A"
    name_b = "+".join(sorted(b["init"].astype(str).unique())) or "B"
    recipes = [(name, k) for name, k, fixed in ((name_a, ka, fixed_a), (name_b, kb, fixed_b)) if not fixed]
    if recipes and all(k >= 2 for _, k in recipes):
        if len(recipes) == 2:
            return "pretraining", (
                f"pretraining: {ka} vs {kb} pretraining runs, each evaluated with {d} downstream seed(s); "
                "Welch over encoder means"
            )
        (recipe, k), fixed = recipes[0], name_b if recipes[0][0] == name_a else name_a
        return "pretraining", (
            f"a pretraining recipe ({recipe}, K = {k}) against the fixed checkpoint {fixed}: Welch of the recipe's "
            "encoder means against the checkpoint's runs"
        )
    if not recipes:
        return "checkpoints", (
            "fixed checkpoints on both sides (scratch, torchvision, file): no pretraining of this study to replicate, "
            "the verdict is about these checkpoints"
        )
    single = [name for name, k in recipes if k < 2]
    if max(ka, kb) >= 2:
        return "checkpoints", (
            f"{', '.join(single)} has one pretraining run, so the verdict is about that checkpoint (the replicated "
            "arm enters with its encoder means)"
        )
    return "checkpoints", (
        "about these two checkpoints: one pretraining run per arm, its runs are downstream seeds of one encoder and "
        "the variance between pretraining runs is not seen"
    )


#: Croux & Rousseeuw (1992): small-sample factors that make 1.4826 · MAD unbiased for n ≤ 9 (n / (n − 0.8) above).
_MAD_SMALL_N = {2: 1.196, 3: 1.495, 4: 1.363, 5: 1.206, 6: 1.200, 7: 1.140, 8: 1.129, 9: 1.107}


def robust_outliers(arms: Sequence[pd.DataFrame], z: float = OUTLIER_Z) -> dict[Any, str]:
    """Runs further than ``z`` robust SDs from their own arm's median: their index in the arms' tables → ``init
    [rep r] seed s: value (z robust SDs …)`` (the arms must be slices of one table, so that indices are unique).

    The robust SD is pooled over the cell's arms: 1.4826 · MAD of every run's distance to its arm's median, with
    Croux & Rousseeuw's small-sample factor (with 4 runs an arm's own MAD is too unstable to flag by); where that
    is 0, 1.2533 · their mean absolute distance."""
    parts = [with_replicate(a) for a in arms if len(a)]
    dev = [np.abs(a["value"].to_numpy(float) - np.median(a["value"].to_numpy(float))) for a in parts]
    pooled = np.concatenate(dev) if dev else np.array([])
    n = len(pooled)
    if n < 3:
        return {}
    factor = _MAD_SMALL_N.get(n, n / (n - 0.8))
    scale = 1.4826 * factor * float(np.median(pooled)) or 1.2533 * float(pooled.mean())
    if not scale > 0:
        return {}
    out = {}
    for runs, distances in zip(parts, dev):
        for r, distance in zip(runs.itertuples(), distances / scale):
            if distance > z:
                rep = f" rep {int(r.replicate)}" if runs["replicate"].nunique() > 1 else ""
                value = f"{float(r.value):.4g} ({distance:.1f} robust SDs from its arm's median)"
                out[r.Index] = f"{r.init}{rep} seed {int(r.seed)}: {value}"
    return out


def scratch_gate(scratch: Sequence[float], a: Sequence[float], b: Sequence[float]) -> str | None:
    """Why a cell is degenerate: the scratch (no pretraining) mean lies within the spread (min–max) of the two
    pretrained arms' runs (pass them without flagged outliers, so that one failed run does not widen it), so the
    task at this protocol does not tell pretraining from none. ``None``: it does."""
    s = np.asarray(scratch, float)
    s = s[np.isfinite(s)]
    pooled = np.concatenate([np.asarray(a, float), np.asarray(b, float)])
    pooled = pooled[np.isfinite(pooled)]
    if len(s) < 1 or len(pooled) < 2:
        return None
    low, high, mean = float(pooled.min()), float(pooled.max()), float(s.mean())
    if low <= mean <= high:
        return (
            f"degenerate cell: scratch (no pretraining) scores {mean:.4g} on average, within the pretrained arms' "
            f"spread [{low:.4g}, {high:.4g}], so this task × protocol does not tell pretraining from none"
        )
    return None


def variance_components(table: pd.DataFrame, by: Sequence[str] = ("task", "protocol", "metric")) -> pd.DataFrame:
    """Per group of ``by``: the replicated inits (K ≥ 2), total encoders, D (runs per encoder, min), σ²_encoder,
    σ²_seed and the intra-class correlation σ²_encoder / (σ²_encoder + σ²_seed). Groups without a replicated init
    report σ²_seed only (σ²_encoder is not seen with one pretraining run per init)."""
    table = with_replicate(table)
    if "primary" in table.columns:
        table = table[table["primary"].astype(bool)]
    rows = []
    for keys, group in table.groupby(list(by), sort=True):
        arms = [part for _, part in group.groupby("init", sort=True)]
        enc = encoder_means(group)
        k = enc.groupby("init")["replicate"].nunique()
        var_e, var_s = components(arms)
        total = var_e + var_s if np.isfinite(var_e) and np.isfinite(var_s) else math.nan
        rows.append(
            {
                **dict(zip(by, keys if isinstance(keys, tuple) else (keys,))),
                "replicated_inits": ", ".join(sorted(k[k >= 2].index.astype(str))) or "–",
                "encoders": int(len(enc)),
                "d": int(enc["d"].min()) if len(enc) else 0,
                "var_encoder": var_e,
                "var_seed": var_s,
                "icc": var_e / total if total and np.isfinite(total) and total > 0 else math.nan,
            }
        )
    return pd.DataFrame(rows)

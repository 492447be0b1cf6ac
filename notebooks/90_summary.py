# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 90 · Summary: CT or birds?
#
# Every claim of the paper, judged by one rule on our runs and, beside it, on the paper's own runs (`paper_runs.csv`).
# The rule: Welch's t-test per row, Holm within each claim's family; **supports** / **contradicts** = Holm p < α and the
# sign of Δ; **equivalent** = TOST within the declared margin (no-difference claims only); **inconclusive** = neither,
# with the smallest effect this many runs could detect and the runs that would detect the observed Δ; **withheld** = no
# test is defined, or an arm's encoder did not beat random init on its own domain (kNN sanity check); **not run** = the
# study lacks an arm, a task or a protocol (the reason names the config change). *Inconclusive is not "no difference".*

# %% tags=["parameters"]
profile = "default"
config = ""

# %%
import warnings

warnings.filterwarnings("ignore")
import pandas as pd

pd.set_option("display.max_colwidth", None)
pd.set_option("display.max_rows", 1000)
from IPython.display import HTML, display

from rtl_core.report import views
from rtl_core.report.context import provenance_html, study_config

cfg = study_config(profile, config)
study = cfg.study
display(HTML(provenance_html(profile, config=config)))
results = views.load(study)
claims = views.claims(study)

# %%
from rtl_core.analysis import claims as engine

rows = engine.current_claims(cfg)
print(
    f"α = {cfg.analysis.alpha}, equivalence margin ±{cfg.analysis.equivalence_margin:g} % of arm B, "
    f"arms: {engine.config_arms(cfg)}"
)

# %% [markdown]
# ## Claims at a glance
#
# Our verdicts and the paper's (its own runs, the same rule), counted over each claim's rows.

# %%
engine.claim_overview(rows)

# %% [markdown]
# ## Every row
#
# One row per claim × task × metric. Δ % = (A / B − 1) · 100 with Welch's CI; SD with ddof = 1; p Holm within the
# claim's family.

# %%
engine.display_table(rows)

# %%
engine.verdict_figure(rows, cfg.analysis.equivalence_margin)
# %% [markdown]
# ## The paper judged by the same rule
#
# Recomputed from its per-run logs (RadNet-1.28M, RadNet-12M, IxR, IxR_mixed vs ImageNet / RadNet-1.28M). The abstract's
# +0.44 % / +2.07 % / +1.63 % compare ImageNet with an *interpolated* "RadNet-1.28M (UB-adjusted)" population, not with
# logged runs, so they are quoted in the claims list below, not recomputed.

# %%
engine.display_table(
    engine.judge_paper(alpha=cfg.analysis.alpha, margin_pct=cfg.analysis.equivalence_margin), paper=False
)

# %% [markdown]
# ## The claims
#
# Each claim's statement, arms by role, expected outcome and notes.

# %%
engine.claim_texts()

# %% [markdown]
# ## Every comparison
#
# Every pair of inits on every task and protocol; comparisons outside the claims are exploratory and uncorrected.

# %%
import pandas as pd

pd.concat(
    [views.protocol_stats(results, p, claims=rows).assign(protocol=p) for p in results["protocol"].unique()],
    ignore_index=True,
)

# %% [markdown]
# ## Caveats
#
# * The demo pack is small and low-resolution (32–64 px on a CPU budget); absolute scores are far below the paper's and
#   comparisons are noisier.
# * `ct_cls` has no patient ids: splits are grouped by near-duplicate slices, so slices of one patient that are not
#   near-duplicates may still straddle splits.
# * The pools are ~5k images each, far from RadNet's 1.28M / ImageNet's 1.28M: this tests the method, not the paper's
#   scale.
# * With 4 seeds per arm only large effects are detectable (see each row's smallest detectable Δ): an inconclusive row
#   says the study cannot tell, not that the arms are alike.

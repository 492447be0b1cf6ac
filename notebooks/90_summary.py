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
# The study's own questions first, then every claim of the paper, judged by one rule on our runs and, beside it, on
# the paper's own runs (`paper_runs.csv`). Each verdict gives the arm ahead, Δ (absolute and % of arm B), its scope
# (over pretraining runs, or about these checkpoints), K × D and its flags.

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
from IPython.display import Markdown

from rtl_core.analysis import claims as engine
from rtl_core.analysis.claims.rule import RULE_SUMMARY

display(Markdown(f"**The rule.** {RULE_SUMMARY} Step by step: `docs/claims.md`."))
rows = engine.current_claims(cfg)
applies, not_run = views.split_claims(rows)
own, paper_rows = views.split_questions(applies)
print(
    f"α = {cfg.analysis.alpha}, equivalence margin ±{cfg.analysis.equivalence_margin:g} % of arm B, "
    f"arms: {engine.config_arms(cfg)}"
)
note = views.not_run_note(rows, where="under 'Not run in this study'")
if note:
    display(Markdown(f"**{note}**"))

# %% [markdown]
# ## Questions of this study
#
# The questions the study declares (`analysis.questions`), judged on its runs: one line per question, then every
# row.

# %%
if len(own):
    own_table = views.verdict_table(own)
    display(views.table(views.without_paper(views.overview_details(engine.claim_overview(own), own_table))))
    display(views.table(views.without_paper(own_table)))
else:
    display(Markdown("*This study declares no questions of its own (`analysis.questions`).*"))

# %% [markdown]
# ## Claims at a glance
#
# Our verdicts and the paper's (its own runs, the same rule), counted over each claim's rows that apply to this study.

# %%
paper_table = views.verdict_table(paper_rows) if len(paper_rows) else None
(
    views.overview_details(engine.claim_overview(paper_rows), paper_table)
    if len(paper_rows)
    else Markdown("*No claim of the paper applies to this study.*")
)

# %% [markdown]
# ## Every row
#
# One row per claim × task × metric that applies to this study. Δ % = (A / B − 1) · 100 with Welch's CI; SD with
# ddof = 1; p Holm within the claim's family; the paper's verdict and flags beside.

# %%
paper_table if paper_table is not None else Markdown("*No claim of the paper applies to this study.*")

# %%
engine.verdict_figure(applies, cfg.analysis.equivalence_margin) if len(applies) else None

# %% [markdown]
# ## Variance components
#
# Per task × protocol (each task's primary metric): the variance between encoders (pretraining runs of one init)
# and between downstream seeds (runs of one encoder), the one-way ANOVA estimates of
# `rtl_core.analysis.replicates.variance_components`. The first decides whether a verdict can speak about
# pretraining or only about these checkpoints.

# %%
variance = views.variance_table(results)
display(Markdown(views.variance_note(variance)))
views.table(variance)

# %% [markdown]
# ## Not run in this study
#
# The rows of the declared questions (the study's own and the paper's claims) that this study lacks an arm, a task or
# a protocol for; the reason names the config change that runs them.

# %%
engine.display_table(not_run)[["claim", "task", "protocol", "metric", "A", "B", "why"]] if len(not_run) else Markdown(
    "*None: the study ran every claim's arms, tasks and protocols.*"
)

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
# Each declared question's statement (the study's own first, then the paper's), arms, expected outcome, margin and
# notes.

# %%
from rtl_core.analysis.questions import declared_claims

declared = declared_claims(cfg)
engine.claim_texts([c for c in declared if not c.builtin] + [c for c in declared if c.builtin])

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
# * With few runs per arm (the default study: 2 downstream seeds per encoder; 3 pretraining runs for CT and natural,
#   evaluated linearly) only large effects are detectable (see each row's smallest detectable Δ and K × D): an
#   inconclusive row says the study cannot tell, not that the arms are alike. A row whose scope is `checkpoints`
#   speaks about the encoders this study trained, not about pretraining on that domain.

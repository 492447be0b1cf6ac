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

# %% tags=["parameters"]
# Results, statistics and learning curves of one evaluation protocol. The reports run this notebook once per
# protocol (`finetune`, `linear`, `lowlabel_1`) into 20_finetune, 21_linear_eval and 22_low_label.
profile = "default"
config = ""
protocol = "finetune"

# %%
import warnings

warnings.filterwarnings("ignore")
import pandas as pd

pd.set_option("display.max_colwidth", None)
pd.set_option("display.max_rows", 1000)
from IPython.display import HTML, Markdown, display

from rtl_core.report import views
from rtl_core.report.context import provenance_html, study_config

display(Markdown(views.protocol_page(protocol)))
cfg = study_config(profile, config)
study = cfg.study
display(HTML(provenance_html(profile, config=config)))
results = views.load(study)
claims = views.claims(study)

# %% [markdown]
# ## Results per task and init
#
# Primary metric of each task, mean ± SD (ddof = 1) over seeds (runs in brackets).

# %%
views.protocol_summary(results, protocol)

# %%
views.protocol_figure(results, protocol)
# %% [markdown]
# ## Statistics
#
# Every pair of inits per task: Welch's t-test as in the paper (pingouin, correction=True), the paired t-test
# (runs share seeds) and Welch's 95 % CI of the difference; Δ % = (A/B − 1)·100, SD with ddof = 1. Correction for
# multiple tests belongs to the claims: a comparison that is part of a claim shows that claim's Holm p and verdict
# (the same numbers as in 90 · Summary); the others are exploratory, uncorrected.

# %%
views.protocol_stats(results, protocol, claims=claims)

# %% [markdown]
# ## Learning curves
#
# Training loss per epoch, mean over seeds (band: SD).

# %%
views.curves_figure(study, protocol)
# %%
views.labels_figure(results, protocol)

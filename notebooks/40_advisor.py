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
# # 40 · Transfer advisor
#
# Which init will transfer best to a task, predicted before any fine-tuning from one forward pass of each candidate
# encoder over the task's training images: grouped kNN accuracy, a 10-shot linear probe, LogME (You et al., ICML 2021)
# and the normalised Fréchet distance of the task's features to the init's pretraining pool. The advisor ranks by the
# mean of the kNN, probe and LogME ranks (no fitted weights). Then the check that matters: how often that ranking agrees
# with what the grid measured, beside two baselines.

# %% tags=["parameters"]
profile = "default"
config = ""

# %%
import warnings

warnings.filterwarnings("ignore")
import pandas as pd

pd.set_option("display.max_rows", 1000)
from IPython.display import HTML, Markdown, display

from rtl_core.analysis import advisor
from rtl_core.report import views
from rtl_core.report.context import provenance_html, study_config

cfg = study_config(profile, config)
display(HTML(provenance_html(profile, config=config)))
scores, validation, summary = advisor.load_study_advice(cfg)

# %% [markdown]
# ## Scores per task and init
#
# Higher is better for kNN, probe and LogME; lower for the domain distance. `advisor_rank` 1 is the recommendation;
# `seconds` is the forward pass plus scoring.

# %%
views.advisor.scores_table(scores)

# %% [markdown]
# ## Recommendations

# %%
views.advisor.recommendations_table(scores)

# %% [markdown]
# ## Validation on the measured grid
#
# Per task × protocol: does the score's best init match the measured best (top-1), and how well does its ranking follow
# the measured one (Kendall's τ)? Means over cells, 95 % bootstrap CI over tasks. With three inits per task, τ takes few
# values and a random ranking has top-1 1/3.

# %%
display(Markdown(views.advisor.verdict_text(summary)))
views.advisor.summary_table(summary)

# %%
views.advisor.summary_figure(summary)
# %% [markdown]
# ### Every cell

# %%
validation

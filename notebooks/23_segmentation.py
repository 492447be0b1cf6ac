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
# # 23 · Segmentation
#
# U-Net decoder (segmentation-models-pytorch) on each ResNet encoder, for every segmentation task of the study (the
# demo's: MSD / LiTS liver CT slices split by scan). Dice per scan (how challenges report it; primary) and per slice
# batch (the paper's way).

# %% tags=["parameters"]
profile = "default"
config = ""

# %%
import warnings

warnings.filterwarnings("ignore")
import pandas as pd

pd.set_option("display.max_colwidth", None)
pd.set_option("display.max_rows", 1000)
from IPython.display import HTML, Markdown, display

from rtl_core.report import views
from rtl_core.report.context import provenance_html, study_config

cfg = study_config(profile, config)
study = cfg.study
display(HTML(provenance_html(profile, config=config)))
results = views.load(study)
claims = views.claims(study)

# %%
seg = results[results["task"].isin(views.segmentation_tasks(cfg))]
shown = views.main_protocol(cfg)  # fine-tune when the study ran it, else its first protocol
seg.groupby(["protocol", "metric", "init"])["value"].agg(mean="mean", sd_ddof1="std", n="count").round(4)

# %%
views.protocol_figure(seg, shown)
# %% [markdown]
# ## Statistics (fine-tune and linear / frozen encoder, as far as the study ran them)

# %% [markdown]
# Every pair of inits per task: Welch's t-test as in the paper (pingouin, correction=True), the paired t-test (runs
# share seeds) and Welch's 95 % CI of the difference; Δ % = (A/B − 1)·100, SD with ddof = 1. Correction for multiple
# tests belongs to the claims: a comparison that is part of a claim shows that claim's Holm p and verdict (the same
# numbers as in 90 · Summary); the others are exploratory, uncorrected.

# %%
for protocol in [p for p in ("finetune", "linear") if p in cfg.evaluate.protocols]:
    display(Markdown(f"### {protocol}"))
    display(views.protocol_stats(seg, protocol, claims=claims))

# %%
views.curves_figure(study, shown)

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
# # 10 · Pretraining
#
# One self-supervised run per pool and method (SimCLR, the paper's method, by default): settings, throughput, loss
# curves, and a quick check of what was learnt: kNN accuracy (k = 20, cosine) of frozen features against the same
# backbone at random init.

# %% tags=["parameters"]
profile = "default"
config = ""

# %%
import warnings

warnings.filterwarnings("ignore")
from IPython.display import HTML, display

from rtl_core.analysis.study import sanity_results
from rtl_core.report import views
from rtl_core.report.context import provenance_html, study_config

cfg = study_config(profile, config)
study = cfg.study
display(HTML(provenance_html(profile, config=config)))

# %% [markdown]
# ## Pretraining runs
#
# Throughput in image pairs per second (two augmented views per image).

# %%
views.pretrain.pretraining_table(study)

# %%
views.pretrain.curves_figure(study)
# %% [markdown]
# ## What the encoders learnt: kNN accuracy of frozen features
#
# Each pretrained encoder against the same backbone at several random inits on its domain's own task (`gates`: `ct_cls`
# for CT, Imagenette for natural; the claims engine withholds verdicts on an arm that fails), and on CUB-50 birds,
# reported beside. `mcnemar_p` is the worst over the random seeds (the analysis's `sanity.csv`; measured here if the
# analysis has not run).

# %%
sanity_results(cfg)

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
# # 00 · Data
#
# What is in each pretraining pool and downstream task of the demo pack: sizes, classes, split sizes by patient / scan,
# sample images and intensity distributions.

# %% tags=["parameters"]
profile = "default"
config = ""
split_seed = 0
image_size = 64

# %%
from IPython.display import HTML, display

from rtl_core.data import overview
from rtl_core.report.context import provenance_html

display(HTML(provenance_html(profile, seeds=[], config=config)))

# %% [markdown]
# ## Tasks
#
# Splits are grouped by patient / scan (or by duplicate group where a source has no ids), stratified by class and
# seeded. `groups_*` counts the patients / scans / duplicate groups per split; `fingerprint` identifies the exact split.

# %%
tasks = overview.task_table(split_seed)
tasks

# %% [markdown]
# ## The study's own pools and tasks
#
# Pools and tasks the study's config adds (none for a stock profile), as the study resolves them: split sizes, patient /
# scan groups, and how many of a pool's files were left out because they are val/test images of one of its tasks.

# %%
from rtl_core.data.study import study_data_table
from rtl_core.report.context import study_config

study_data_table(study_config(profile, config))

# %% [markdown]
# ## Pools
#
# Unlabelled pretraining pools, size-matched. No image of any task's validation or test split is in a pool (checked by
# source row and by content hash).

# %%
pools = overview.pool_table(size=image_size)
pools

# %% [markdown]
# ## Samples
#
# Random images of every task (caption: class, or liver share for segmentation) and pool (caption: source), as the model
# sees them.

# %%
overview.sample_grid(size=image_size)
# %% [markdown]
# ## Intensities
#
# CT in Hounsfield units with the window presets, then every task's pixel intensities after windowing.

# %%
overview.hu_histograms()
# %%
overview.intensity_histograms()

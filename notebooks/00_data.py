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
# What is in each pretraining pool and downstream task of the study: sizes, classes, split sizes by patient / scan,
# sample images and intensity distributions. A study with its own pools and tasks sees them first, then the demo pack's
# tasks and pools it uses as well (if any).

# %% tags=["parameters"]
profile = "default"
config = ""
split_seed = 0
image_size = 64

# %%
from IPython.display import HTML, Markdown, display

from rtl_core.report import views
from rtl_core.report.context import provenance_html, study_config

cfg = study_config(profile, config)
demo_tasks, demo_pools = views.data.demo_data_used(cfg)
display(HTML(provenance_html(profile, seeds=[], config=config)))

# %%
views.data.own_data_section(cfg)

# %%
views.data.own_data_samples(cfg)

# %%
views.data.demo_data_intro(cfg)

# %%
if demo_tasks:
    display(
        Markdown(
            "### Tasks\n\nSplits are grouped by patient / scan (or by duplicate group where a source has no ids), "
            "stratified by class and seeded. `groups_*` counts the patients / scans / duplicate groups per split; "
            "`fingerprint` identifies the exact split."
        )
    )
    tasks = views.data.task_table(split_seed)
    display(views.table(tasks[tasks["task"].isin(demo_tasks)]))

# %%
if demo_pools:
    display(
        Markdown(
            "### Pools\n\nUnlabelled pretraining pools, size-matched. No image of any task's validation or test split "
            "is in a pool (checked by source row and by content hash)."
        )
    )
    pools = views.data.pool_table(size=image_size)
    display(views.table(pools[pools["pool"].isin(demo_pools)]))

# %%
if demo_tasks or demo_pools:
    display(
        Markdown(
            "### Samples\n\nRandom images of every task (caption: class, or liver share for segmentation) and pool "
            "(caption: source), as the model sees them."
        )
    )
views.data.sample_grid(demo_tasks + demo_pools, size=image_size) if demo_tasks or demo_pools else None

# %%
if demo_tasks:
    display(
        Markdown(
            "### Intensities\n\nCT in Hounsfield units with the window presets, then every task's pixel intensities "
            "after windowing."
        )
    )
views.data.hu_histograms() if demo_tasks else None
# %%
views.data.intensity_histograms(demo_tasks) if demo_tasks else None

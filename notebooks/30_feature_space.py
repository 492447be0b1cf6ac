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
# # 30 · Feature space
#
# What did pretraining put into the network? Layer-wise CKA between encoders pretrained on CT, on natural images and at
# random, on CT inputs and on natural inputs; how well each layer separates the pack's domains; what linear probes read
# from each layer; an interactive map of every domain's test images (hover a point to see it). The paper's claim under
# test: CT pretraining yields domain-specific features tied to macroscopic image properties.

# %% tags=["parameters"]
profile = "default"
config = ""

# %%
import warnings

from IPython.display import HTML, display

warnings.filterwarnings("ignore")
from rtl_core.analysis.study import load_analysis
from rtl_core.report import views
from rtl_core.report.context import provenance_html, study_config

display(HTML(provenance_html(profile, config=config)))
tables = load_analysis(study_config(profile, config))
inits = tables["info"]["inits"]
pairs = [(a, b) for i, a in enumerate(inits) for b in inits[i + 1 :]]

# %% [markdown]
# ## Did the encoders learn? The kNN sanity check
#
# Each pretrained encoder against random inits of the same backbone (several seeds) on its own domain's task: kNN
# accuracy (k = 20, cosine) and McNemar's exact test, worst p over the random seeds. A claim row whose arm fails this is
# *withheld* in 90 · Summary.

# %%
tables["sanity"].round(4)

# %% [markdown]
# ## CKA between encoders
#
# Linear CKA (Kornblith et al. 2019) of global-average-pooled stage outputs, every layer of one encoder against every
# layer of another. High values on the diagonal mean the two pretraining sources led to similar representations at that
# depth.

# %%
views.features.cka_heatmaps(tables["cka"], pairs)
# %%
views.features.cka_diagonal_figure(tables["cka"], pairs)
# %% [markdown]
# ## Feature reuse after fine-tuning
#
# The paper's weight-space measure: RBF CKA between the weights of conv1, layer1[0].conv1 and layer1[0].conv2 before and
# after fine-tuning (1 = the fine-tune kept the pretrained filters).

# %%
reuse = tables["weight_cka"]
reuse.groupby(["init", "task", "layer"])["weight_cka"].agg(mean="mean", sd_ddof1="std", n="count").reset_index() if len(
    reuse
) else HTML("<p>No fine-tuned weights were kept by this run of the evaluation grid.</p>")

# %% [markdown]
# ### Feature uniqueness
#
# The same weight-space CKA between differently pretrained encoders: how different are the filters that CT and natural
# images (and random init) leave in the first layers?

# %%
tables["weight_uniqueness"].pivot_table(index=["init_a", "init_b"], columns="layer", values="weight_cka").round(3)

# %% [markdown]
# ## Domain separability
#
# How well each layer's features tell the pack's domains apart: leave-patients-out kNN accuracy and silhouette score.

# %%
views.features.separability_figure(tables["separability"])
# %%
tables["separability"].pivot_table(index=["init", "layer"], columns="metric", values="score").round(3)

# %% [markdown]
# ## Linear probes
#
# Ridge (R²) or logistic (accuracy) probes per layer, cross-validated by patient group, for properties that need no
# labels (mean intensity, contrast, body fraction, edge density, high-frequency energy, liver area) and for dataset of
# origin and body region. Caveat: among CT images body region coincides with dataset (chest: COVID-CT; abdomen: liver
# sets).

# %%
views.features.probe_figure(tables["probes"])
# %%
tables["probes"].pivot_table(index=["property", "metric"], columns=["init", "layer"], values="score").round(3)

# %% [markdown]
# ## Who knew what
#
# For each pair of inits: how many test images both classified correctly, against the overlap independence predicts
# (p_a·p_b·n); ratio > 1 means they got the same images right, Fisher's exact test for the association. Mean over seeds
# per task and protocol, then the fine-tune heatmaps of the first seed.

# %%
overlap = tables["overlap"]
cols = ["both", "expected", "ratio", "jaccard", "p_value"]
overlap.groupby(["task", "protocol", "init_a", "init_b"])[cols].mean().round(3).reset_index() if len(overlap) else HTML(
    "<p>No per-image test results in the run records.</p>"
)

# %%
if len(overlap):
    first = overlap[(overlap["protocol"] == "finetune") & (overlap["seed"] == overlap["seed"].min())]
    for task, part in first.groupby("task"):
        views.features.overlap_heatmap(part).suptitle(f"{task} (fine-tune)")

# %% [markdown]
# ## Embeddings
#
# UMAP of layer-4 features of every domain's test images, per init.

# %%
views.features.embedding_grid(tables["umap"], hue="domain", row=None, col="init")
# %% [markdown]
# ### Interactive view
#
# Hover (or click) a point to see its image, class and domain.

# %%
for init, page in tables["embedding_html"].items():
    if init.startswith("ssl"):
        display(HTML(views.features.as_iframe(page)))

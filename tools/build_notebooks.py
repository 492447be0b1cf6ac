"""Writes notebooks/*.ipynb from the cell lists below (so notebook sources stay reviewable in one place).

Run ``python tools/build_notebooks.py`` after editing; the notebooks themselves are committed.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent / "notebooks"


def params(source: str):
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def notebook(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


NOTEBOOKS = {
    "00_data": [
        new_markdown_cell("# 00 · Data\n\nWhat is in each pretraining pool and downstream task of the demo pack: sizes, "
                          "classes, split sizes by patient / scan, sample images and intensity distributions."),
        params('profile = "default"\nsplit_seed = 0\nimage_size = 64'),
        new_code_cell("from IPython.display import HTML, display\n"
                      "from rtl_core.data import overview\n"
                      "from rtl_core.report.context import provenance_html\n"
                      "display(HTML(provenance_html(profile, seeds=[])))"),
        new_markdown_cell("## Tasks\n\nSplits are grouped by patient / scan (or by duplicate group where a source has no ids), "
                          "stratified by class and seeded. `groups_*` counts the patients / scans / duplicate groups per split; "
                          "`fingerprint` identifies the exact split."),
        new_code_cell("tasks = overview.task_table(split_seed)\ntasks"),
        new_markdown_cell("## Pools\n\nUnlabelled pretraining pools, size-matched. No image of any task's validation or test "
                          "split is in a pool (checked by source row and by content hash)."),
        new_code_cell("pools = overview.pool_table(size=image_size)\npools"),
        new_markdown_cell("## Samples\n\nRandom images of every task (caption: class, or liver share for segmentation) and pool "
                          "(caption: source), as the model sees them."),
        new_code_cell("overview.sample_grid(size=image_size);"),
        new_markdown_cell("## Intensities\n\nCT in Hounsfield units with the window presets, then every task's pixel intensities "
                          "after windowing."),
        new_code_cell("overview.hu_histograms();"),
        new_code_cell("overview.intensity_histograms();"),
    ],
    "30_feature_space": [
        new_markdown_cell("# 30 · Feature space\n\nWhat did pretraining put into the network? Layer-wise CKA between encoders "
                          "pretrained on CT, on natural images and at random, on CT inputs and on natural inputs; how well each "
                          "layer separates the pack's domains; what linear probes read from each layer; an interactive map of "
                          "every domain's test images (hover a point to see it). The paper's claim under test: CT pretraining "
                          "yields domain-specific features tied to macroscopic image properties."),
        params('profile = "default"'),
        new_code_cell("from IPython.display import HTML, display\n"
                      "from rtl_core.analysis import figures\n"
                      "from rtl_core.analysis.study import load_analysis\n"
                      "from rtl_core.report.context import provenance_html\n"
                      "display(HTML(provenance_html(profile)))\n"
                      "tables = load_analysis(profile)\n"
                      "inits = tables['info']['inits']\n"
                      "pairs = [(a, b) for i, a in enumerate(inits) for b in inits[i + 1:]]"),
        new_markdown_cell("## CKA between encoders\n\nLinear CKA (Kornblith et al. 2019) of global-average-pooled stage outputs, "
                          "every layer of one encoder against every layer of another. High values on the diagonal mean the "
                          "two pretraining sources led to similar representations at that depth."),
        new_code_cell("figures.cka_heatmaps(tables['cka'], pairs);"),
        new_code_cell("figures.cka_diagonal_figure(tables['cka'], pairs);"),
        new_markdown_cell("## Feature reuse after fine-tuning\n\nThe paper's weight-space measure: RBF CKA between the weights of "
                          "conv1, layer1[0].conv1 and layer1[0].conv2 before and after fine-tuning (1 = the fine-tune kept the "
                          "pretrained filters)."),
        new_code_cell("reuse = tables['weight_cka']\n"
                      "reuse.groupby(['init', 'task', 'layer'])['weight_cka'].agg(['mean', 'std', 'count']).reset_index() "
                      "if len(reuse) else HTML('<p>No fine-tuned weights were kept by this run of the evaluation grid.</p>')"),
        new_markdown_cell("## Domain separability\n\nHow well each layer's features tell the pack's domains apart: "
                          "leave-patients-out kNN accuracy and silhouette score."),
        new_code_cell("figures.separability_figure(tables['separability']);"),
        new_code_cell("tables['separability'].pivot_table(index=['init', 'layer'], columns='metric', values='score').round(3)"),
        new_markdown_cell("## Linear probes\n\nRidge (R²) or logistic (accuracy) probes per layer, cross-validated by patient "
                          "group, for properties that need no labels (mean intensity, contrast, body fraction, edge density, "
                          "high-frequency energy, liver area) and for dataset of origin and body region. Caveat: among CT images "
                          "body region coincides with dataset (chest: COVID-CT; abdomen: liver sets)."),
        new_code_cell("figures.probe_figure(tables['probes']);"),
        new_markdown_cell("## Embeddings\n\nUMAP of layer-4 features of every domain's test images, per init."),
        new_code_cell("figures.embedding_grid(tables['umap'], hue='domain', row=None, col='init');"),
        new_markdown_cell("### Interactive view\n\nHover (or click) a point to see its image, class and domain."),
        new_code_cell("for init, page in tables['embedding_html'].items():\n"
                      "    if init.startswith('ssl'):\n"
                      "        display(HTML(figures.as_iframe(page)))"),
    ],
}


def main() -> None:
    ROOT.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nbformat.write(notebook(cells), str(ROOT / f"{name}.ipynb"))
        print(f"wrote notebooks/{name}.ipynb")


if __name__ == "__main__":
    main()

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
}


def main() -> None:
    ROOT.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nbformat.write(notebook(cells), str(ROOT / f"{name}.ipynb"))
        print(f"wrote notebooks/{name}.ipynb")


if __name__ == "__main__":
    main()

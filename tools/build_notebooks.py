"""Writes notebooks/*.ipynb from the cell lists below (so notebook sources stay reviewable in one place).

Run ``python tools/build_notebooks.py`` after editing; the notebooks themselves are committed.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent / "notebooks"


#: Every notebook's parameters: the profile and, for a user's study, the path of its config file.
PARAMS = 'profile = "default"\nconfig = ""'


def params(source: str):
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def notebook(cells) -> nbformat.NotebookNode:
    for number, cell in enumerate(cells):
        cell.id = f"cell-{number:02d}"  # stable ids: rebuilding an unchanged notebook changes no byte
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def results_header():
    """The first code cell of every results notebook: quiet warnings, provenance banner, the results table."""
    return new_code_cell("import warnings\nwarnings.filterwarnings('ignore')\n"
                         "import pandas as pd\npd.set_option('display.max_colwidth', None)\npd.set_option('display.max_rows', 1000)\n"
                         "from IPython.display import HTML, display\n"
                         "from rtl_core.report import views\n"
                         "from rtl_core.report.context import provenance_html\n"
                         "from rtl_core.report.context import study_config\n"
                         "cfg = study_config(profile, config)\n"
                         "study = cfg.study\n"
                         "display(HTML(provenance_html(profile, config=config)))\n"
                         "results = views.load(study)\n"
                         "claims = views.claims(study)")


STATS_TEXT = ("## Statistics\n\nEvery pair of inits per task: Welch's t-test as in the paper (pingouin, correction=True), "
              "the paired t-test (runs share seeds) and Welch's 95 % CI of the difference; Δ % = (A/B − 1)·100, SD with "
              "ddof = 1. Correction for multiple tests belongs to the claims: a comparison that is part of a claim shows "
              "that claim's Holm p and verdict (the same numbers as in 90 · Summary); the others are exploratory, "
              "uncorrected.")


def protocol_notebook(title: str, intro: str, protocol: str, extra=()) -> list:
    """Results, statistics and learning curves of one evaluation protocol."""
    return [
        new_markdown_cell(f"# {title}\n\n{intro}"),
        params(PARAMS),
        results_header(),
        new_markdown_cell("## Results per task and init\n\nPrimary metric of each task, mean ± SD (ddof = 1) over seeds (runs in brackets)."),
        new_code_cell(f"views.protocol_summary(results, '{protocol}')"),
        new_code_cell(f"views.protocol_figure(results, '{protocol}');"),
        new_markdown_cell(STATS_TEXT),
        new_code_cell(f"views.protocol_stats(results, '{protocol}', claims=claims)"),
        new_markdown_cell("## Learning curves\n\nTraining loss per epoch, mean over seeds (band: SD)."),
        new_code_cell(f"views.curves_figure(study, '{protocol}');"),
        *extra,
    ]


NOTEBOOKS = {
    "00_data": [
        new_markdown_cell("# 00 · Data\n\nWhat is in each pretraining pool and downstream task of the demo pack: sizes, "
                          "classes, split sizes by patient / scan, sample images and intensity distributions."),
        params(PARAMS + '\nsplit_seed = 0\nimage_size = 64'),
        new_code_cell("from IPython.display import HTML, display\n"
                      "from rtl_core.data import overview\n"
                      "from rtl_core.report.context import provenance_html\n"
                      "display(HTML(provenance_html(profile, seeds=[], config=config)))"),
        new_markdown_cell("## Tasks\n\nSplits are grouped by patient / scan (or by duplicate group where a source has no ids), "
                          "stratified by class and seeded. `groups_*` counts the patients / scans / duplicate groups per split; "
                          "`fingerprint` identifies the exact split."),
        new_code_cell("tasks = overview.task_table(split_seed)\ntasks"),
        new_markdown_cell("## The study's own pools and tasks\n\nPools and tasks the study's config adds (none for a "
                          "stock profile), as the study resolves them: split sizes, patient / scan groups, and how many "
                          "of a pool's files were left out because they are val/test images of one of its tasks."),
        new_code_cell("from rtl_core.data.study import study_data_table\n"
                      "from rtl_core.report.context import study_config\n"
                      "study_data_table(study_config(profile, config))"),
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
    "10_pretrain": [
        new_markdown_cell("# 10 · Pretraining\n\nOne self-supervised run per pool and method (SimCLR, the paper's method, by "
                          "default): settings, throughput, loss curves, and a quick check of what was learnt: kNN accuracy "
                          "(k = 20, cosine) of frozen features against the same backbone at random init."),
        params(PARAMS),
        new_code_cell("import warnings\nwarnings.filterwarnings('ignore')\n"
                      "from IPython.display import HTML, display\n"
                      "from rtl_core.pretrain import views\n"
                      "from rtl_core.report.context import provenance_html\n"
                      "from rtl_core.report.context import study_config\n"
                      "from rtl_core.analysis.study import sanity_results\n"
                      "cfg = study_config(profile, config)\n"
                      "study = cfg.study\n"
                      "display(HTML(provenance_html(profile, config=config)))"),
        new_markdown_cell("## Pretraining runs\n\nThroughput in image pairs per second (two augmented views per image)."),
        new_code_cell("views.runs_table(study)"),
        new_code_cell("views.curves_figure(study);"),
        new_markdown_cell("## What the encoders learnt: kNN accuracy of frozen features\n\nEach pretrained encoder "
                          "against the same backbone at several random inits on its domain's own task (`gates`: "
                          "`ct_cls` for CT, Imagenette for natural; the claims engine withholds verdicts on an arm "
                          "that fails), and on CUB-50 birds, reported beside. `mcnemar_p` is the worst over the "
                          "random seeds (the analysis's `sanity.csv`; measured here if the analysis has not run)."),
        new_code_cell("sanity_results(cfg)"),
    ],
    "20_finetune": protocol_notebook(
        "20 · Full fine-tune",
        "Every layer trains (paper E1). Does the pretraining domain still matter once the whole network adapts?",
        "finetune",
    ),
    "21_linear_eval": protocol_notebook(
        "21 · Linear evaluation",
        "Frozen encoder (BatchNorm in eval mode), linear head only (paper E4): how good are the pretrained features as they are?",
        "linear",
    ),
    "22_low_label": protocol_notebook(
        "22 · Low-label fine-tune",
        "Fine-tunes on the nested 1 % (and 10 %) subsets of each training split, at least one image per class (paper E2).",
        "lowlabel_1",
        [new_markdown_cell("## Labels vs performance\n\nPrimary metric against the share of training labels."),
         new_code_cell("views.fraction_figure(results);")],
    ),
    "23_segmentation": [
        new_markdown_cell("# 23 · Segmentation\n\nU-Net decoder (segmentation-models-pytorch) on each ResNet encoder, for "
                          "every segmentation task of the study (the demo's: MSD / LiTS liver CT slices split by scan). Dice per scan (how challenges report it; primary) and per slice "
                          "batch (the paper's way)."),
        params(PARAMS),
        results_header(),
        new_code_cell("seg = results[results['task'].isin(views.segmentation_tasks(cfg))]\n"
                      "seg.groupby(['protocol', 'metric', 'init'])['value'].agg(mean='mean', sd_ddof1='std', n='count').round(4)"),
        new_code_cell("views.protocol_figure(seg, 'finetune');"),
        new_markdown_cell("## Statistics (fine-tune and linear / frozen encoder)"),
        new_markdown_cell(STATS_TEXT.replace("## Statistics", "").strip()),
        new_code_cell("views.protocol_stats(seg, 'finetune', claims=claims)"),
        new_code_cell("views.protocol_stats(seg, 'linear', claims=claims)"),
        new_code_cell("views.curves_figure(study, 'finetune');"),
    ],
    "40_advisor": [
        new_markdown_cell("# 40 · Transfer advisor\n\nWhich init will transfer best to a task, predicted before any fine-tuning "
                          "from one forward pass of each candidate encoder over the task's training images: grouped kNN "
                          "accuracy, a 10-shot linear probe, LogME (You et al., ICML 2021) and the normalised Fréchet "
                          "distance of the task's features to the init's pretraining pool. The advisor ranks by the mean "
                          "of the kNN, probe and LogME ranks (no fitted weights). Then the check that matters: how often "
                          "that ranking agrees with what the grid measured, beside two baselines."),
        params(PARAMS),
        new_code_cell("import warnings\nwarnings.filterwarnings('ignore')\n"
                      "import pandas as pd\npd.set_option('display.max_rows', 1000)\n"
                      "from IPython.display import HTML, Markdown, display\n"
                      "from rtl_core.analysis import advisor\n"
                      "from rtl_core.report.context import provenance_html, study_config\n"
                      "cfg = study_config(profile, config)\n"
                      "display(HTML(provenance_html(profile, config=config)))\n"
                      "scores, validation, summary = advisor.load_study_advice(cfg)"),
        new_markdown_cell("## Scores per task and init\n\nHigher is better for kNN, probe and LogME; lower for the domain "
                          "distance. `advisor_rank` 1 is the recommendation; `seconds` is the forward pass plus scoring."),
        new_code_cell("advisor.scores_table(scores)"),
        new_markdown_cell("## Recommendations"),
        new_code_cell("advisor.recommendations_table(scores)"),
        new_markdown_cell("## Validation on the measured grid\n\nPer task × protocol: does the score's best init match the "
                          "measured best (top-1), and how well does its ranking follow the measured one (Kendall's τ)? "
                          "Means over cells, 95 % bootstrap CI over tasks. With three inits per task, τ takes few values "
                          "and a random ranking has top-1 1/3."),
        new_code_cell("display(Markdown(advisor.verdict_text(summary)))\nadvisor.summary_table(summary)"),
        new_code_cell("advisor.summary_figure(summary);"),
        new_markdown_cell("### Every cell"),
        new_code_cell("validation"),
    ],
    "90_summary": [
        new_markdown_cell("# 90 · Summary: CT or birds?\n\nEvery claim of the paper, judged by one rule on our runs and, "
                          "beside it, on the paper's own runs (`paper_runs.csv`). The rule: Welch's t-test per row, Holm "
                          "within each claim's family; **supports** / **contradicts** = Holm p < α and the sign of Δ; "
                          "**equivalent** = TOST within the declared margin (no-difference claims only); **inconclusive** = "
                          "neither, with the smallest effect this many runs could detect and the runs that would detect "
                          "the observed Δ; **withheld** = no test is defined, or an arm's encoder did not beat random init "
                          "on its own domain (kNN sanity check); **not run** = the study lacks an arm, a task or a "
                          "protocol (the reason names the config change). *Inconclusive is not \"no difference\".*"),
        params(PARAMS),
        results_header(),
        new_code_cell("from rtl_core.analysis import claims as engine\n"
                      "rows = engine.current_claims(cfg)\n"
                      "print(f'α = {cfg.analysis.alpha}, equivalence margin ±{cfg.analysis.equivalence_margin:g} % of arm B, '\n"
                      "      f'arms: {engine.config_arms(cfg)}')"),
        new_markdown_cell("## Claims at a glance\n\nOur verdicts and the paper's (its own runs, the same rule), counted "
                          "over each claim's rows."),
        new_code_cell("engine.claim_overview(rows)"),
        new_markdown_cell("## Every row\n\nOne row per claim × task × metric. Δ % = (A / B − 1) · 100 with Welch's CI; "
                          "SD with ddof = 1; p Holm within the claim's family."),
        new_code_cell("engine.display_table(rows)"),
        new_code_cell("engine.verdict_figure(rows, cfg.analysis.equivalence_margin);"),
        new_markdown_cell("## The paper judged by the same rule\n\nRecomputed from its per-run logs (RadNet-1.28M, "
                          "RadNet-12M, IxR, IxR_mixed vs ImageNet / RadNet-1.28M). The abstract's +0.44 % / +2.07 % / +1.63 % "
                          "compare ImageNet with an *interpolated* \"RadNet-1.28M (UB-adjusted)\" population, not with "
                          "logged runs, so they are quoted in the claims list below, not recomputed."),
        new_code_cell("engine.display_table(engine.judge_paper(alpha=cfg.analysis.alpha, "
                      "margin_pct=cfg.analysis.equivalence_margin), paper=False)"),
        new_markdown_cell("## The claims\n\nEach claim's statement, arms by role, expected outcome and notes."),
        new_code_cell("engine.claim_texts()"),
        new_markdown_cell("## Every comparison\n\nEvery pair of inits on every task and protocol; comparisons outside "
                          "the claims are exploratory and uncorrected."),
        new_code_cell("import pandas as pd\n"
                      "pd.concat([views.protocol_stats(results, p, claims=rows).assign(protocol=p) "
                      "for p in results['protocol'].unique()], ignore_index=True)"),
        new_markdown_cell("## Caveats\n\n* The demo pack is small and low-resolution (32–64 px on a CPU budget); absolute scores are far "
                          "below the paper's and comparisons are noisier.\n"
                          "* `ct_cls` has no patient ids: splits are grouped by near-duplicate slices, so slices of one patient "
                          "that are not near-duplicates may still straddle splits.\n"
                          "* The pools are ~5k images each, far from RadNet's 1.28M / ImageNet's 1.28M: this tests the method, "
                          "not the paper's scale.\n"
                          "* With 4 seeds per arm only large effects are detectable (see each row's smallest detectable Δ): "
                          "an inconclusive row says the study cannot tell, not that the arms are alike."),
    ],
    "30_feature_space": [
        new_markdown_cell("# 30 · Feature space\n\nWhat did pretraining put into the network? Layer-wise CKA between encoders "
                          "pretrained on CT, on natural images and at random, on CT inputs and on natural inputs; how well each "
                          "layer separates the pack's domains; what linear probes read from each layer; an interactive map of "
                          "every domain's test images (hover a point to see it). The paper's claim under test: CT pretraining "
                          "yields domain-specific features tied to macroscopic image properties."),
        params(PARAMS),
        new_code_cell("from IPython.display import HTML, display\n"
                      "import warnings\nwarnings.filterwarnings('ignore')\n"
                      "from rtl_core.analysis import figures\n"
                      "from rtl_core.analysis.study import load_analysis\n"
                      "from rtl_core.report.context import provenance_html\n"
                      "from rtl_core.report.context import study_config\n"
                      "display(HTML(provenance_html(profile, config=config)))\n"
                      "tables = load_analysis(study_config(profile, config).study)\n"
                      "inits = tables['info']['inits']\n"
                      "pairs = [(a, b) for i, a in enumerate(inits) for b in inits[i + 1:]]"),
        new_markdown_cell("## Did the encoders learn? The kNN sanity check\n\nEach pretrained encoder against random "
                          "inits of the same backbone (several seeds) on its own domain's task: kNN accuracy (k = 20, cosine) "
                          "and McNemar's exact test, worst p over the random seeds. A claim row whose arm fails this is "
                          "*withheld* in 90 · Summary."),
        new_code_cell("tables['sanity'].round(4)"),
        new_markdown_cell("## CKA between encoders\n\nLinear CKA (Kornblith et al. 2019) of global-average-pooled stage outputs, "
                          "every layer of one encoder against every layer of another. High values on the diagonal mean the "
                          "two pretraining sources led to similar representations at that depth."),
        new_code_cell("figures.cka_heatmaps(tables['cka'], pairs);"),
        new_code_cell("figures.cka_diagonal_figure(tables['cka'], pairs);"),
        new_markdown_cell("## Feature reuse after fine-tuning\n\nThe paper's weight-space measure: RBF CKA between the weights of "
                          "conv1, layer1[0].conv1 and layer1[0].conv2 before and after fine-tuning (1 = the fine-tune kept the "
                          "pretrained filters)."),
        new_code_cell("reuse = tables['weight_cka']\n"
                      "reuse.groupby(['init', 'task', 'layer'])['weight_cka'].agg(mean='mean', sd_ddof1='std', n='count').reset_index() "
                      "if len(reuse) else HTML('<p>No fine-tuned weights were kept by this run of the evaluation grid.</p>')"),
        new_markdown_cell("### Feature uniqueness\n\nThe same weight-space CKA between differently pretrained encoders: how "
                          "different are the filters that CT and natural images (and random init) leave in the first layers?"),
        new_code_cell("tables['weight_uniqueness'].pivot_table(index=['init_a', 'init_b'], columns='layer', values='weight_cka').round(3)"),
        new_markdown_cell("## Domain separability\n\nHow well each layer's features tell the pack's domains apart: "
                          "leave-patients-out kNN accuracy and silhouette score."),
        new_code_cell("figures.separability_figure(tables['separability']);"),
        new_code_cell("tables['separability'].pivot_table(index=['init', 'layer'], columns='metric', values='score').round(3)"),
        new_markdown_cell("## Linear probes\n\nRidge (R²) or logistic (accuracy) probes per layer, cross-validated by patient "
                          "group, for properties that need no labels (mean intensity, contrast, body fraction, edge density, "
                          "high-frequency energy, liver area) and for dataset of origin and body region. Caveat: among CT images "
                          "body region coincides with dataset (chest: COVID-CT; abdomen: liver sets)."),
        new_code_cell("figures.probe_figure(tables['probes']);"),
        new_code_cell("tables['probes'].pivot_table(index=['property', 'metric'], columns=['init', 'layer'], values='score').round(3)"),
        new_markdown_cell("## Who knew what\n\nFor each pair of inits: how many test images both classified correctly, against the "
                          "overlap independence predicts (p_a·p_b·n); ratio > 1 means they got the same images right, Fisher's "
                          "exact test for the association. Mean over seeds per task and protocol, then the fine-tune heatmaps "
                          "of the first seed."),
        new_code_cell("overlap = tables['overlap']\n"
                      "cols = ['both', 'expected', 'ratio', 'jaccard', 'p_value']\n"
                      "overlap.groupby(['task', 'protocol', 'init_a', 'init_b'])[cols].mean().round(3).reset_index() if len(overlap) "
                      "else HTML('<p>No per-image test results in the run records.</p>')"),
        new_code_cell("if len(overlap):\n"
                      "    first = overlap[(overlap['protocol'] == 'finetune') & (overlap['seed'] == overlap['seed'].min())]\n"
                      "    for task, part in first.groupby('task'):\n"
                      "        figures.overlap_heatmap(part).suptitle(f'{task} (fine-tune)')"),
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

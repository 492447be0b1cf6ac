"""``rtl analyze``: the feature-space analysis of a study, computed once and saved for the notebooks.

For the study's inits (``scratch`` = a seeded random encoder, ``ssl:<pool>:<method>`` = our checkpoints):

* layer-wise linear CKA between every pair of encoders, on CT inputs and on natural inputs
  (Kornblith et al. 2019; streaming / minibatch estimators, :mod:`rtl_core.analysis.cka`);
* feature reuse: each pretrained encoder against its fine-tuned self (where the evaluation kept fine-tuned
  weights), layer-wise CKA and the paper's weight-space RBF CKA of conv1, layer1[0].conv1/conv2;
* embeddings of every domain's test images: domain separability per layer, UMAP coordinates and an
  interactive view with thumbnails;
* linear probes per layer for macroscopic image properties and dataset / body region, grouped by patient;
* who knew what: overlap of correctly classified test images between inits (from the run records);
* the kNN sanity check of the claims engine: does each pretrained encoder beat random inits on its own domain's
  task (:mod:`rtl_core.analysis.sanity`)?

Everything lands in ``artifacts/analysis/<study>/`` as CSV / HTML; a rerun skips what exists.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from rtl_core.analysis.cka import layerwise_cka, weight_cka
from rtl_core.analysis.embeddings import (
    EMBEDDING_TASKS,
    encoder_features,
    normalize,
    sample_tasks,
    separability_table,
    umap_frame,
)
from rtl_core.analysis.sanity import patch_problem, sanity_table
from rtl_core.config import StudyConfig
from rtl_core.errors import ConfigError
from rtl_core.io import atomic_write, write_json
from rtl_core.models.backbones import RESNET_STAGES, analysis_layers, stage_layers
from rtl_core.names import init_slug
from rtl_core.paths import analysis_dir, finetuned_dir, study_dir
from rtl_core.pretrain.knn import knn_image_size

log = logging.getLogger(__name__)

#: Bumped whenever the set of tables changes, so an older analysis is redone rather than read.
ANALYSIS_VERSION = 6  # 4: kNN sanity at the pretraining crop size; 5: CUB rows beside (gates = false); 6: debiased CKA
CT_TASKS = ("ct_cls", "ct_liver_seg")
NATURAL_TASKS = ("imagenette_cls", "natural_cls")
CKA_LAYERS = tuple(s for s in RESNET_STAGES if s != "avgpool")
#: The study's CKA uses the debiased estimator (unbiased HSIC, Song et al. 2012; Kornblith et al. 2019): its
#: ``cka_images`` (1000 on the default profile, 5000 on paper) are only 2-10x the widest pooled layer (512
#: features for ResNet-18, 2048 for ResNet-50), where the plug-in estimator is biased towards 1 even for
#: unrelated features (tests/test_cka.py: CKA > 0.1 for independent 64-d Gaussians at n = 256).
CKA_DEBIASED = True


def study_encoders(config: StudyConfig) -> tuple[dict[str, nn.Module], dict[str, tuple], dict[str, str]]:
    """``init -> encoder``, ``init -> (mean, std)`` and ``init -> arch`` (each encoder's own architecture: a
    ``file:`` or ``torchvision:`` init's may differ from ``pretrain.backbone``) for the study's inits, loaded
    exactly as the evaluation loads them (:func:`rtl_core.models.inits.load_init`; ``scratch`` is the random
    encoder of ``config.seed``). An init whose input contract is not 3-channel ``[0, 1]`` images (a TorchXRayVision
    model) is left out with a logged reason (:func:`rtl_core.models.contracts.unconverted_inputs`)."""
    from rtl_core.models.contracts import unconverted_inputs
    from rtl_core.models.inits import load_init

    encoders, stats, archs = {}, {}, {}
    details = config.evaluate.init_details
    for init in config.evaluate.inits:
        detail = details[init].model_dump() if init in details else None
        encoder, info = load_init(init, config.study, config.pretrain.backbone, config.seed, detail)
        wrong = unconverted_inputs(info.get("contract"))
        if wrong:  # the analysis feeds 3-channel [0, 1] images: never a silently wrong input
            log.warning(
                "the feature-space analysis leaves out %s: its input contract (%s) is not applied here", init, wrong
            )
            continue
        encoders[init], stats[init], archs[init] = encoder, (tuple(info["mean"]), tuple(info["std"])), info["arch"]
    return encoders, stats, archs


def readable(encoders: dict[str, nn.Module], archs: dict[str, str], size: int, table: str) -> list[str]:
    """The inits whose encoder reads ``size`` px images (a ViT's patch size must divide it) and whose layers the
    analysis knows (:func:`rtl_core.models.backbones.analysis_layers`); the others are left out of ``table`` with a
    logged reason."""
    kept = []
    for init, model in encoders.items():
        try:
            problem = patch_problem(model, size)
            analysis_layers(archs[init])
        except ConfigError as exc:
            problem = str(exc)
        if problem is None:
            kept.append(init)
        else:
            log.warning("%s: %s (%s) left out: %s", table, init, archs[init], problem)
    return kept


def init_domains(config: StudyConfig) -> dict[str, str | None]:
    """The pretraining domain of each of the study's inits (``evaluate.init_details``, else the init's default)."""
    from rtl_core.names import parse_init

    details = config.evaluate.init_details
    return {
        init: (details[init].domain if init in details and details[init].domain else parse_init(init).default_domain())
        for init in config.evaluate.inits
    }


def _normalised_batches(images: torch.Tensor, stats: tuple, batch_size: int = 128):
    for start in range(0, len(images), batch_size):
        yield normalize(images[start : start + batch_size].float().div(255), *stats)


def _is_resnet(arch: str) -> bool:
    return analysis_layers(arch)[0] == "conv1"


def cka_layers(arch_a: str, arch_b: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The layers CKA compares between encoders of ``arch_a`` and ``arch_b``: every layer against every layer of
    the same architecture (:func:`rtl_core.models.backbones.analysis_layers`: a ResNet's ``CKA_LAYERS``, a ViT's
    blocks, …); across architectures, whose layers do not correspond, each one's last layer (pooled features)."""
    if arch_a == arch_b:
        return analysis_layers(arch_a), analysis_layers(arch_a)
    return analysis_layers(arch_a)[-1:], analysis_layers(arch_b)[-1:]


def cka_tables(
    config: StudyConfig, encoders, stats, n_images: int, archs: dict[str, str] | None = None
) -> pd.DataFrame:
    """Tidy layer-wise CKA: one row per (model_a, model_b, inputs, layer_a, layer_b) over :func:`cka_layers` of the
    two encoders' architectures (``archs``; default: all ``pretrain.backbone``)."""
    rows = []
    archs = archs or dict.fromkeys(encoders, config.pretrain.backbone)
    inputs = {
        "ct": sample_tasks(CT_TASKS, n_per_task=max(2, n_images // len(CT_TASKS)), size=config.data.image_size, seed=1),
        "natural": sample_tasks(NATURAL_TASKS, n_per_task=n_images, size=config.data.image_size, seed=1),
    }
    names = readable(encoders, archs, config.data.image_size, "CKA")
    for domain, sample in inputs.items():
        for i, a in enumerate(names):
            for b in names[i:]:
                layers_a, layers_b = cka_layers(archs[a], archs[b])
                # Both models see the same images, each normalised its own way; pair them batch by batch.
                loader = zip(_normalised_batches(sample.images, stats[a]), _normalised_batches(sample.images, stats[b]))
                matrix = layerwise_cka(
                    encoders[a],
                    encoders[b],
                    loader,
                    layers_a,
                    layers_b,
                    debiased=CKA_DEBIASED,
                    paired_inputs=True,
                    progress=False,
                )
                for la, row in zip(layers_a, matrix):
                    for lb, value in zip(layers_b, row):
                        rows.append(
                            {
                                "model_a": a,
                                "model_b": b,
                                "inputs": domain,
                                "layer_a": la,
                                "layer_b": lb,
                                "cka": float(value),
                                "estimator": "debiased" if CKA_DEBIASED else "biased",
                                "n_images": len(sample.images),
                            }
                        )
    return pd.DataFrame(rows)


def weight_reuse_table(config: StudyConfig, encoders) -> pd.DataFrame:
    """The paper's weight-space CKA between each pretrained encoder and its fine-tuned copies (where saved)."""
    rows = []
    finetuned_root = finetuned_dir(config.study)
    for init, model in encoders.items():
        for path in sorted(finetuned_root.glob(f"{init_slug(init)}/*/*.pt")):
            state = torch.load(path, map_location="cpu", weights_only=True)
            for layer, value in weight_cka(model.state_dict(), state).items():
                rows.append(
                    {"init": init, "task": path.parent.name, "run": path.stem, "layer": layer, "weight_cka": value}
                )
    return pd.DataFrame(rows, columns=["init", "task", "run", "layer", "weight_cka"])


def weight_uniqueness_table(encoders, archs: dict[str, str] | None = None) -> pd.DataFrame:
    """The paper's "feature uniqueness": weight-space RBF CKA between differently pretrained encoders (low = the
    pretraining sources left different filters in conv1 / layer1); pairs of the same architecture only
    (``archs``; default: one), whose filters correspond."""
    names, rows = list(encoders), []
    archs = archs or dict.fromkeys(encoders, "")
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if archs[a] != archs[b]:
                log.info(
                    "weight-space CKA: %s (%s) and %s (%s) differ in architecture: no row", a, archs[a], b, archs[b]
                )
                continue
            for layer, value in weight_cka(encoders[a].state_dict(), encoders[b].state_dict()).items():
                rows.append({"init_a": a, "init_b": b, "layer": layer, "weight_cka": value})
    return pd.DataFrame(rows, columns=["init_a", "init_b", "layer", "weight_cka"])


def who_knew_what(config: StudyConfig) -> pd.DataFrame:
    """Overlap of correctly classified test images between inits, per task, protocol and seed (from the run
    records' ``test_correct``), against the overlap independence predicts; an init's replicate 0 stands for it."""
    from rtl_core.analysis.overlap import overlap_table
    from rtl_core.paths import results_dir
    from rtl_core.results import load_records

    root = results_dir(config.study)
    groups: dict[tuple, dict[str, np.ndarray]] = {}
    for record in load_records(root):
        if record.get("test_correct") and record["init"] in config.evaluate.inits and not record.get("replicate"):
            key = (record["task"], record["protocol"], record["seed"])
            groups.setdefault(key, {})[record["init"]] = np.asarray(record["test_correct"], dtype=bool)
    frames = []
    for (task, protocol, seed), correct in groups.items():
        if len(correct) >= 2 and len({len(v) for v in correct.values()}) == 1:
            frames.append(overlap_table(correct).assign(task=task, protocol=protocol, seed=seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["task", "protocol", "seed"])


def _is_current(out: Path, config: StudyConfig) -> bool:
    """Whether ``out/done.json`` is an analysis of this version and this config (analysis outputs are keyed by
    the settings that made them: another config's analysis is recomputed, not reused)."""
    done = out / "done.json"
    info = json.loads(done.read_text()) if done.is_file() else {}
    return info.get("version") == ANALYSIS_VERSION and info.get("config_hash") == config.hash()


def _sanity_check(
    config: StudyConfig, encoders: dict[str, nn.Module], stats: dict[str, tuple], archs: dict[str, str]
) -> pd.DataFrame:
    pretrained = {init: model for init, model in encoders.items() if init != "scratch"}
    return sanity_table(
        pretrained,
        {init: archs[init] for init in pretrained},  # each against random inits of its own architecture
        knn_image_size(config.pretrain.crop_size),
        seeds=range(config.analysis.sanity_random_seeds),
        alpha=config.analysis.alpha,
        domains=init_domains(config),
        stats=stats,
    )


def sanity_results(config: StudyConfig) -> pd.DataFrame:
    """The kNN sanity check of the study's pretrained encoders (:mod:`rtl_core.analysis.sanity`): the analysis's
    ``sanity.csv`` when a current analysis of this config exists, else measured now (the pretraining notebook, before
    ``rtl analyze``)."""
    out = study_dir("analysis", config.study)
    if _is_current(out, config) and (out / "sanity.csv").is_file():
        return pd.read_csv(out / "sanity.csv")
    return _sanity_check(config, *study_encoders(config))  # encoders, stats, archs


def analyze(config: StudyConfig, force: bool = False) -> Path:
    """Compute every analysis table of the study (skipping those that exist unless ``force``)."""
    from rtl_core.analysis.figures import interactive_embedding_html, thumbnail_uris
    from rtl_core.analysis.probes import probe_table, probe_targets

    out = analysis_dir(config.study)
    done = out / "done.json"
    if not force and _is_current(out, config):
        return out
    encoders, stats, archs = study_encoders(config)
    n = config.analysis.cka_images
    cka_tables(config, encoders, stats, n, archs).to_csv(out / "cka.csv", index=False)
    # The paper's weight layers are a ResNet's conv1 and layer1: encoders of other architectures have no rows.
    known = readable(encoders, archs, 0, "weight-space CKA")  # size 0: every patch size divides it
    resnets = {i: encoders[i] for i in known if _is_resnet(archs[i])}
    for init in sorted(set(known) - set(resnets)):
        log.warning(
            "weight-space CKA reads a ResNet's conv1 and layer1; %s (%s) has neither: no rows", init, archs[init]
        )
    weight_reuse_table(config, resnets).to_csv(out / "weight_cka.csv", index=False)
    weight_uniqueness_table(resnets, archs).to_csv(out / "weight_uniqueness.csv", index=False)
    who_knew_what(config).to_csv(out / "overlap.csv", index=False)
    _sanity_check(config, encoders, stats, archs).to_csv(out / "sanity.csv", index=False)

    per_task = max(8, config.analysis.embedding_images // len(EMBEDDING_TASKS))
    sample = sample_tasks(EMBEDDING_TASKS, n_per_task=per_task, size=config.data.image_size, seed=2)
    # Each encoder's own stages (a ResNet's layer1 … layer4, a ViT's evenly spaced blocks); UMAP of its last.
    stages = {i: stage_layers(archs[i]) for i in readable(encoders, archs, config.data.image_size, "embeddings")}
    features = {
        i: encoder_features({i: encoders[i]}, sample.images, layers, stats=stats)[i] for i, layers in stages.items()
    }
    separability_table(features, sample.meta).to_csv(out / "separability.csv", index=False)
    separability_table(features, sample.meta, by="task").to_csv(out / "separability_task.csv", index=False)
    targets = probe_targets(sample)
    probe_table(features, targets, sample.meta["group"].to_numpy()).to_csv(out / "probes.csv", index=False)
    last = {i: {layers[-1]: features[i][layers[-1]]} for i, layers in stages.items()}
    frame = umap_frame(last, sample.meta, n_neighbors=15, seed=config.seed)
    frame.to_csv(out / "umap.csv", index=False)
    thumbs = thumbnail_uris(sample.images, size=48, fmt="webp")
    for init, part in frame.groupby("init", sort=False):
        html = interactive_embedding_html(
            part.reset_index(drop=True),
            [thumbs[i] for i in part["image_index"]],
            color="domain",
            title=f"{init}: {stages[init][-1]} features of every domain (UMAP)",
            include_plotlyjs=True,
            full_html=False,
        )
        atomic_write(out / f"embedding_{init_slug(init)}.html", lambda tmp, h=html: tmp.write_text(h))
    write_json(
        done,
        {
            "config_hash": config.hash(),
            "inits": list(encoders),
            "images": len(sample.images),
            "version": ANALYSIS_VERSION,
        },
    )
    return out


def load_analysis(config: StudyConfig) -> dict:
    """The saved analysis tables of ``config``'s study and its interactive views: only an analysis of this
    analysis version and this very config (``done.json``), never an older config's (run ``rtl analyze`` first)."""
    from rtl_core.errors import RtlError

    out = study_dir("analysis", config.study)
    if not _is_current(out, config):
        raise RtlError(
            f"No current analysis for study {config.study!r} (config {config.hash()}) in {out}: it is missing, "
            "of an older analysis version or of other settings; run `rtl analyze` with this config first."
        )
    info = json.loads((out / "done.json").read_text())
    tables = {
        name: pd.read_csv(out / f"{name}.csv")
        for name in (
            "cka",
            "weight_cka",
            "weight_uniqueness",
            "overlap",
            "separability",
            "separability_task",
            "probes",
            "umap",
            "sanity",
        )
    }
    tables["info"] = info
    pages = {init: out / f"embedding_{init_slug(init)}.html" for init in info.get("inits", [])}
    tables["embedding_html"] = {init: page.read_text() for init, page in pages.items() if page.is_file()}
    return tables

"""``rtl export``: one of the study's encoders as a file to share: safetensors weights plus a model card.

The weights are the encoder's torchvision ``state_dict`` (no ``fc``) in ``encoder.safetensors``, whose metadata
carry the architecture, the input normalisation and the checkpoint's sidecar, so that ``file:encoder.safetensors``
reads it back exactly (:mod:`rtl_core.models.foreign`). ``README.md`` is the model card (Mitchell et al. 2019,
"Model Cards for Model Reporting", in short): what it was pretrained on, how, with which data fingerprint and
commit, what it scored (kNN sanity check, downstream results of this study), the licences of its data, and how
to load it with plain torchvision or as an rtl_core init.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from rtl_core.config import StudyConfig
from rtl_core.errors import ConfigError
from rtl_core.io import atomic_write
from rtl_core.paths import study_dir

WEIGHTS_NAME = "encoder.safetensors"


def export_dir(config: StudyConfig, init: str) -> Path:
    from rtl_core.names import init_slug

    return study_dir("exports", config.study) / init_slug(init)


def pool_licences(pool: str) -> list[dict[str, str]]:
    """Each source of a demo pool with the licence and citation its ``meta.json`` states (empty for user pools)."""
    from rtl_core.data.demo_pools import POOL_SOURCES
    from rtl_core.paths import data_root

    rows, seen = [], set()
    for source in POOL_SOURCES.get(pool, ()):
        rel = getattr(source.read, "rel", None)
        if rel is None or rel in seen:
            continue
        seen.add(rel)
        meta_path = data_root() / rel / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        rows.append(
            {
                "source": rel,
                "repository": str(meta.get("source_repo", "–")),
                "licence": str(meta.get("license", "not stated")),
                "citation": str(meta.get("citation", "–")),
            }
        )
    return rows


def export_encoder(config: StudyConfig, init: str, out: Path | None = None) -> Path:
    """Write ``encoder.safetensors`` and ``README.md`` for ``init`` (one of ours: ``ssl:`` / ``sequential:``, or a
    ``file:`` init: :func:`export_file_init`)
    into ``out`` (default ``artifacts/exports/<study>/<init>/``); returns the folder."""
    from safetensors.torch import save_file

    from rtl_core.models.checkpoints import input_normalization, load_encoder
    from rtl_core.models.inits import check_checkpoint
    from rtl_core.names import parse_init

    parsed = parse_init(init)
    if parsed.kind == "file":
        return export_file_init(config, init, out)
    if not parsed.ours:
        raise ConfigError(
            f"rtl export: {init!r} is not one of this study's pretrained encoders (ssl:<pool>:<method> or "
            "sequential:<pool>:<method>) or a file: init; torchvision: inits are files already."
        )
    check_checkpoint(parsed, config.study)
    encoder, sidecar = load_encoder(parsed.stem(config.study))
    mean, std = input_normalization(sidecar)
    out = Path(out) if out else export_dir(config, init)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    metadata = {
        "format": "pt",
        "arch": sidecar["arch"],
        "init": init,
        "normalize": json.dumps({"mean": list(mean), "std": list(std)}),
        "sidecar": json.dumps(sidecar, default=str),
    }
    atomic_write(out / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    card = model_card(config, init, sidecar, mean, std)
    atomic_write(out / "README.md", lambda tmp: tmp.write_text(card))
    return out


def export_file_init(config: StudyConfig, init: str, out: Path | None = None) -> Path:
    """A ``file:`` init in any recognised layout (:mod:`rtl_core.models.layouts`) rewritten as
    ``encoder.safetensors`` in the keys of the model that loads it (torchvision's ResNet / DenseNet, the
    RadImageNet port's ResNet-50, timm's ViT), with its architecture, layout and input contract (the layout's, or
    ``evaluate.init_details``') in the metadata, so that ``file:encoder.safetensors`` reads it back exactly."""
    from safetensors.torch import save_file

    from rtl_core.models.foreign import load_file_encoder
    from rtl_core.names import parse_init

    details = config.evaluate.init_details.get(init)
    encoder, found = load_file_encoder(parse_init(init).file, None)
    contract = found["contract"].with_details(details.model_dump() if details else None, init)
    out = Path(out) if out else export_dir(config, init)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    fields = {k: v for k, v in contract.as_dict().items() if k != "source"}
    metadata = {
        "format": "pt",
        "arch": found["arch"],
        "init": init,
        "layout": found["layout"],
        "contract": json.dumps(fields),
        "normalize": json.dumps({"mean": list(contract.mean), "std": list(contract.std)}),
    }
    atomic_write(out / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    card = "\n".join(
        [
            f"# {found['arch']} from {init}",
            "",
            "Re-exported by rtl_core (`rtl export`) from a weights file in the layout",
            f"*{found['layout']}*, loaded strictly; keys are those of the model that loads it.",
            "",
            f"Input contract: {json.dumps(fields)} (from {contract.source}).",
            "",
            f'Use it as an init: `"file:/path/to/{WEIGHTS_NAME}"` (the contract is read from the metadata).',
            "",
        ]
    )
    atomic_write(out / "README.md", lambda tmp: tmp.write_text(card))
    return out


def _results(config: StudyConfig, init: str) -> pd.DataFrame:
    from rtl_core.results import results_table

    table = results_table(config.study)
    part = table[(table["init"] == init) & table["primary"]] if len(table) else table
    if part.empty:
        return part
    return part.groupby(["task", "protocol", "metric"])["value"].agg(mean="mean", sd="std", n="count").reset_index()


def _sanity(config: StudyConfig, init: str) -> pd.DataFrame:
    from rtl_core.paths import analysis_dir

    path = analysis_dir(config.study) / "sanity.csv"
    if not path.is_file():
        return pd.DataFrame()
    table = pd.read_csv(path)
    return table[table["init"] == init]


def _md_table(frame: pd.DataFrame, columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in frame[columns].itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def model_card(config: StudyConfig, init: str, sidecar: dict[str, Any], mean, std) -> str:
    """The model card (Markdown) of an exported encoder."""
    arch, pool, method = sidecar.get("arch"), sidecar.get("pool"), sidecar.get("method")
    parts = [
        f"# {arch} pretrained with {method} on the `{pool}` pool ({init}, study {config.study}, profile "
        f"{config.profile})",
        "",
        "Exported by rtl_core (`rtl export`), the toolkit reproducing Jonske et al., *Why does my medical AI look "
        "at pictures of birds?* (Comput Methods Programs Biomed 2025).",
        "",
        "## Pretraining",
        "",
        "| field | value |",
        "|---|---|",
    ]
    for key in (
        "method",
        "pool",
        "arch",
        "epochs",
        "profile",
        "config_hash",
        "data_fingerprint",
        "git_commit",
        "created",
    ):
        parts.append(f"| {key} | {sidecar.get(key, '–')} |")
    parts.append(f"| input | RGB in [0, 1], normalised with mean {list(mean)} and std {list(std)} |")
    parts += ["", "## Does it know its domain? (kNN sanity check, k = 20, against random inits)", ""]
    sanity = _sanity(config, init)
    parts.append(
        _md_table(sanity, ["task", "knn_init", "knn_random", "mcnemar_p", "random_seeds", "beats_random"])
        if len(sanity)
        else "Not measured: run `rtl analyze` before exporting."
    )
    parts += ["", "## Downstream results in this study (primary metric, mean and SD with ddof = 1 over seeds)", ""]
    results = _results(config, init)
    parts.append(
        _md_table(results, ["task", "protocol", "metric", "mean", "sd", "n"])
        if len(results)
        else "No downstream runs of this encoder yet (`rtl evaluate`)."
    )
    parts += ["", "## Data and licences", ""]
    licences = pool_licences(pool) if pool else []
    if licences:
        parts.append(
            "The weights were trained on these sources; their terms (as the sources state them, in each "
            "folder's `meta.json`) bind what you may do with the weights. Several are research / "
            "non-commercial only."
        )
        parts.append("")
        parts.append(_md_table(pd.DataFrame(licences), ["source", "repository", "licence"]))
    else:
        parts.append(f"Pool `{pool}` is not a demo pool: state its sources and licences here before sharing.")
    parts += [
        "",
        "## How to load it",
        "",
        "Plain torchvision:",
        "",
        "```python",
        "import torch, torchvision",
        "from safetensors.torch import load_file",
        "",
        f"model = torchvision.models.{arch}(weights=None)",
        "model.fc = torch.nn.Identity()  # pooled features",
        f"model.load_state_dict(load_file('{WEIGHTS_NAME}'), strict=True)",
        f"# inputs: x in [0, 1], then (x - {list(mean)}) / {list(std)} per channel",
        "```",
        "",
        "As an init of an rtl_core study (strict loading, normalisation read from the file):",
        "",
        "```yaml",
        "evaluate:",
        f'  inits: [scratch, "file:/path/to/{WEIGHTS_NAME}"]',
        "  init_details:",
        f'    "file:/path/to/{WEIGHTS_NAME}": {{label: "{method} on {pool}", domain: {pool}}}',
        "```",
        "",
    ]
    return "\n".join(parts)

"""Notebooks as functions (papermill): parameters in, an executed notebook out, then HTML via nbconvert.

The notebooks' sources are jupytext percent-format scripts, ``notebooks/<source>.py`` (lintable, diffable, opened
as notebooks by ``make lab``); jupytext turns one into a notebook that papermill executes. Each has one cell tagged
``parameters`` with plain defaults. Parameters are checked before execution: an unknown name, or a profile that
does not exist, is a :class:`ConfigError`. A failing cell raises :class:`NotebookFailed`, which names the notebook,
the cell and where the partial output is.

The report set follows the study (:func:`study_pages`): one protocol page per protocol it ran, the segmentation
page only when it has a segmentation task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtl_core.config import PROFILES
from rtl_core.errors import ConfigError, RtlError
from rtl_core.paths import REPO_ROOT

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


class NotebookFailed(RtlError):
    """A notebook cell raised during headless execution."""


@dataclass(frozen=True)
class NotebookSpec:
    """One report page: ``name`` (its HTML and executed copy), the source it runs and the parameters it fixes."""

    name: str
    title: str
    summary: str
    source: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def source_name(self) -> str:
        return self.source or self.name

    @property
    def protocol(self) -> str | None:
        """The protocol a protocol page shows (None for the other pages)."""
        return self.parameters.get("protocol")


def _protocol_page(name: str, title: str, summary: str, protocol: str) -> NotebookSpec:
    return NotebookSpec(name, title, summary, source="20_protocol", parameters={"protocol": protocol})


#: Every report page, in the order a reader meets them; a study gets the ones that fit it (:func:`study_pages`).
NOTEBOOKS: tuple[NotebookSpec, ...] = (
    NotebookSpec("00_data", "Data", "What is in each pool and task: samples, intensities, split sizes by patient."),
    NotebookSpec(
        "10_pretrain", "Pretraining", "One SSL run per pool and method: settings, loss and throughput, kNN check."
    ),
    _protocol_page(
        "20_finetune",
        "Full fine-tune",
        "Every task and init, all layers trained: results, statistics, learning curves.",
        "finetune",
    ),
    _protocol_page(
        "21_linear_eval",
        "Linear evaluation",
        "Frozen encoders, linear heads: how good the pretrained features are as they are.",
        "linear",
    ),
    _protocol_page(
        "21_linear_bn_train",
        "Linear evaluation, BatchNorm in train mode",
        "Frozen weights whose BatchNorm statistics keep updating, linear heads (the paper's linear protocol).",
        "linear_bn_train",
    ),
    _protocol_page(
        "22_low_label",
        "Low-label fine-tune",
        "1 % (and 10 %) of the labels: results, statistics, labels vs performance.",
        "lowlabel_1",
    ),
    _protocol_page(
        "22_low_label_10",
        "Low-label fine-tune, 10 %",
        "10 % of the labels: results, statistics, labels vs performance.",
        "lowlabel_10",
    ),
    NotebookSpec(
        "23_segmentation", "Liver segmentation", "U-Net on each encoder: Dice per scan and per slice batch, statistics."
    ),
    NotebookSpec(
        "30_feature_space", "Feature space", "CKA between encoders, domain separability, probes, interactive embedding."
    ),
    NotebookSpec(
        "40_advisor",
        "Transfer advisor",
        "Which init should transfer best, from one forward pass, and how often that was right.",
    ),
    NotebookSpec(
        "90_summary", "Summary", "Every claim of the paper judged by one rule, on our runs and on the paper's; caveats."
    ),
)


def study_pages(config) -> list[NotebookSpec]:
    """The report pages of a study: every page of :data:`NOTEBOOKS` except protocol pages of protocols it did not
    run and the segmentation page when it has no segmentation task."""
    from rtl_core.data.study import task_kind

    protocols = set(config.evaluate.protocols)
    segmentation = any(task_kind(config.data, t) == "segmentation" for t in config.evaluate.tasks)
    return [
        spec
        for spec in NOTEBOOKS
        if (spec.protocol is None or spec.protocol in protocols) and (spec.name != "23_segmentation" or segmentation)
    ]


def read_source(path: Path):
    """The notebook (an ``nbformat`` node) that the jupytext source ``path`` describes."""
    import jupytext

    if not path.is_file():
        raise ConfigError(f"Notebook source {path} does not exist.")
    notebook = jupytext.read(str(path))
    notebook.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    notebook.metadata.setdefault("language_info", {"name": "python"})
    return notebook


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The parameters a notebook source declares (its ``parameters`` cell), with their defaults."""
    import tempfile

    import nbformat
    import papermill as pm

    notebook = read_source(path)
    with tempfile.TemporaryDirectory() as tmp:
        converted = Path(tmp) / f"{path.stem}.ipynb"
        nbformat.write(notebook, str(converted))
        declared = pm.inspect_notebook(str(converted))
    return {name: info["default"] for name, info in declared.items()}


def check_parameters(path: Path, parameters: dict[str, Any]) -> None:
    declared = notebook_parameters(path)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ConfigError(f"{path.name}: unknown parameter(s) {unknown}; it declares {sorted(declared)}.")
    profile = parameters.get("profile")
    if profile is not None and profile not in PROFILES:
        raise ConfigError(f"{path.name}: unknown profile {profile!r}; choose one of {', '.join(PROFILES)}.")
    config = parameters.get("config")
    if config and not Path(config).is_file():
        raise ConfigError(f"{path.name}: config file {config} does not exist.")


def execute(
    source_name: str,
    parameters: dict[str, Any],
    out_dir: Path,
    kernel: str = "python3",
    source_dir: Path = NOTEBOOK_DIR,
    name: str = "",
) -> Path:
    """Execute ``notebooks/<source_name>.py`` headless with ``parameters``; the executed copy is
    ``out_dir/<name>.ipynb`` (``name`` defaults to the source's)."""
    import logging

    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    logging.getLogger("papermill").setLevel(logging.WARNING)
    source = source_dir / f"{source_name}.py"
    check_parameters(source, parameters)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name or source_name}.ipynb"
    try:
        pm.execute_notebook(
            read_source(source),
            str(target),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(source_dir),
            progress_bar=False,
            log_output=False,
        )
    except PapermillExecutionError as exc:
        raise NotebookFailed(
            f"Notebook {source.name} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}). "
            f"The partially executed notebook is at {target}."
        ) from None
    return target


def execute_page(spec: NotebookSpec, parameters: dict[str, Any], out_dir: Path) -> Path:
    """Execute the report page ``spec``: its source with ``parameters`` plus the ones the page fixes."""
    return execute(spec.source_name, {**parameters, **spec.parameters}, out_dir, name=spec.name)


def to_html(executed: Path, html_path: Path, show_code: bool = False) -> Path:
    """Render an executed notebook to standalone HTML (figures embedded; code hidden unless ``show_code``)."""
    import nbformat
    from nbconvert import HTMLExporter

    from rtl_core.io import atomic_write

    notebook = nbformat.read(str(executed), as_version=4)
    exporter = HTMLExporter(
        template_name="lab", exclude_input=not show_code, exclude_input_prompt=True, exclude_output_prompt=True
    )
    body, _ = exporter.from_notebook_node(notebook)
    return atomic_write(html_path, lambda tmp: tmp.write_text(body))

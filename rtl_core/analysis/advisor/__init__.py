"""The transfer advisor: rank candidate inits for a task from one forward pass, and say how often that is right.

:func:`advise` passes the task's training images (the images a full-data run trains on) once through each
candidate encoder (any init the study knows: scratch, ours, ``torchvision:``, ``file:``) and scores the frozen
features with :mod:`rtl_core.analysis.transferability`: grouped kNN accuracy, a 10-shot linear probe, LogME,
and the normalised Fréchet distance between the task's features and those of a sample of the init's
pretraining pool (ours: the pool it was trained on; others: the demo pool of their declared domain; none for
scratch). The ranking score, ``advisor``, is the mean of each init's
ranks by kNN, probe and LogME (no fitted weights, so nothing to leave out). Segmentation tasks are scored on
whether a slice shows foreground (a proxy: the estimators need image-level labels).

:func:`validate` measures the advisor on a finished grid: per task × protocol, the advisor's ranking of the
inits against the measured ranking by mean primary metric: top-1 agreement and Kendall's τ, each score and
two baselines ("always the natural-image init", "the init of the task's own domain": the CT init for a medical
task without an init of its modality), with a bootstrap CI over tasks. Studies of these estimators on medical
images (arXiv 2308.07444, 2405.20420) find them unreliable; the validation says whether ours is.

Modules: :mod:`~rtl_core.analysis.advisor.scores` (the scores of one task), :mod:`~rtl_core.analysis.advisor.validation`
(scores against a finished grid), :mod:`~rtl_core.analysis.advisor.store` (``analysis/<study>/advisor/``),
:mod:`~rtl_core.analysis.advisor.headline` (``bench.json``'s figures and the sentence quoted beside a
recommendation). The notebook's tables and figure are in :mod:`rtl_core.report.views.advisor`.
"""

from rtl_core.analysis.advisor.headline import bench_figures, validated_line, validation_note
from rtl_core.analysis.advisor.scores import (
    LOWER_IS_BETTER,
    MAX_IMAGES,
    POOL_SAMPLE,
    RANKED_BY,
    SCORES,
    advise,
    recommendation,
    task_domain,
)
from rtl_core.analysis.advisor.store import (
    ADVISOR_VERSION,
    advisor_dir,
    load_study_advice,
    measured_table,
    study_advice,
)
from rtl_core.analysis.advisor.validation import (
    MIN_VALIDATION_CELLS,
    MIN_VALIDATION_TASKS,
    VALIDATION_COLUMNS,
    summarize_validation,
    validate,
    validation_shortfall,
)

__all__ = [
    "ADVISOR_VERSION",
    "LOWER_IS_BETTER",
    "MAX_IMAGES",
    "MIN_VALIDATION_CELLS",
    "MIN_VALIDATION_TASKS",
    "POOL_SAMPLE",
    "RANKED_BY",
    "SCORES",
    "VALIDATION_COLUMNS",
    "advise",
    "advisor_dir",
    "bench_figures",
    "load_study_advice",
    "measured_table",
    "recommendation",
    "study_advice",
    "summarize_validation",
    "task_domain",
    "validate",
    "validated_line",
    "validation_note",
    "validation_shortfall",
]

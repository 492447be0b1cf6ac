"""The paper's claims (Jonske et al., CMPB 2025) as data: the built-in question set of every profile.

Each claim is a :class:`rtl_core.config.Question` (validated by the same model as a study's own questions): two
arms by *role* (``ct``, ``natural``, ``ct_more``, ``ct_less``, ``mixed``, ``sequential``), the expectation, and
tasks × protocols (× metrics) of our suite; :data:`PAPER_CELLS` maps each cell to the paper's own runs
(``paper_runs.csv``: the right task, experiment, label fraction and metric). Roles resolve to our inits by
:func:`rtl_core.analysis.claims.arms.study_arms` and to the paper's by :data:`PAPER_ARMS`; :data:`PAPER_SENSITIVITY`
puts RadNet-12M in the ``ct`` role as a sensitivity column beside RadNet-1.28M.

The built-in margin is ``analysis.equivalence_margin`` (relative %, default 1 %: half the smallest effect the paper
reports as a finding, E4 linear evaluation on RadNet-CTBR, +2.14 %). The abstract's headline numbers (+0.44 %,
+2.07 %, +1.63 %) compare ImageNet with an interpolated "RadNet-1.28M (UB-adjusted)" population and are quoted
(:attr:`Claim.abstract_quoted`), never recomputed.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rtl_core.analysis.claims.model import Claim, PaperCell, from_question
from rtl_core.config import Margin, Question

BUILTIN_RATIONALE = (
    "analysis.equivalence_margin: half the smallest effect the paper reports as a finding (E4 linear, RadNet-CTBR, "
    "+2.14 %)"
)
_MARGIN = {"value": 1.0, "kind": "relative", "rationale": BUILTIN_RATIONALE}
_BRATS = "BraTS is a segmentation task in the paper (mean Dice of its 3 classes); ours is 4-class MRI classification"
_CX8 = "CX8: ChestX-ray8, mean AUC over 15 findings; ours: paediatric pneumonia vs normal"
_E6E8 = (
    "The paper's E6/E8 arms (IxR_mixed, IxR); the statement is our two-sided reading of them. Its CT-only "
    "and ImageNet runs there are the E1/E4 runs, which the source lists again."
)
_WEIGHTS = ("conv1", "layer1.0.conv1", "layer1.0.conv2")
_LESS = (
    "the data-scale arm, a CT pool at a fraction of the full one pretrained for the same epochs: add "
    "'ssl:ct_less:simclr' to evaluate.inits (data.less_fraction, default 25 %), or name the ct_less arm in "
    "analysis.arms"
)


def _q(id: str, text: str, a: str, b: str, expectation: str, tasks, protocols, metric: Any = "primary", note=""):
    return {
        "id": id,
        "text": text,
        "arm_a": f"role:{a}",
        "arm_b": f"role:{b}",
        "expectation": expectation,
        "tasks": list(tasks),
        "protocols": list(protocols),
        "metric": metric,
        "margin": _MARGIN,
        "note": note,
    }


QUESTIONS: tuple[Question, ...] = tuple(
    Question.model_validate(q)
    for q in (
        _q(
            "C1",
            "Full fine-tuning on CT: in-domain (CT) pretraining gives no clear advantage over natural images.",
            "ct",
            "natural",
            "no_difference",
            ["ct_cls", "ct_liver_seg"],
            ["finetune"],
        ),
        _q(
            "C2",
            "Linear evaluation on CT: CT-pretrained features are better than natural-image ones.",
            "ct",
            "natural",
            "a_better",
            ["ct_cls"],
            ["linear"],
        ),
        _q(
            "C3",
            "Few labels on CT: CT pretraining helps where labels are scarce.",
            "ct",
            "natural",
            "a_better",
            ["ct_cls"],
            ["lowlabel_1", "lowlabel_10"],
        ),
        _q(
            "C4",
            "The CT advantage extends to a second CT task (liver segmentation, LiTS).",
            "ct",
            "natural",
            "a_better",
            ["ct_liver_seg"],
            ["linear", "lowlabel_10", "lowlabel_1"],
        ),
        _q(
            "C5",
            "The CT advantage does not extend to other modalities: natural-image pretraining is as good or "
            "better on X-ray and MRI.",
            "natural",
            "ct",
            "non_inferior",
            ["xray_cls", "mri_cls"],
            ["finetune", "linear"],
            note="'As good or better' is tested as non-inferiority: natural not worse than CT by more than the margin.",
        ),
        _q(
            "C6",
            "Natural images show the same intra-domain advantage: natural-image pretraining gives better "
            "features for a natural-image task.",
            "natural",
            "ct",
            "a_better",
            ["imagenette_cls", "natural_cls"],
            ["finetune", "linear", "lowlabel_1"],
            note="The paper's natural task is ImageNet-1k itself (its pretraining distribution; E1, E4, E2 1 %); "
            "ours is Imagenette, held-out images of the natural pool's own source, and CUB-50 birds beside it.",
        ),
        _q(
            "C7",
            "CT-pretrained features are domain-specific and preserved by fine-tuning on CT: fine-tuning on a "
            "CT task changes the CT-pretrained early filters less than the natural-image ones.",
            "ct",
            "natural",
            "a_better",
            ["ct_cls"],
            ["finetune"],
            metric=[f"weight_cka:{layer}" for layer in _WEIGHTS],
            note="From the feature-space analysis: the paper's weight-space RBF CKA between each encoder and its "
            "fine-tuned copy (1 = filters kept), per seed. Not in paper_runs.csv.",
        ),
        _q(
            "C8",
            "More CT pretraining data helps (RadNet-12M over RadNet-1.28M), on CT tasks and on the natural task.",
            "ct_more",
            "ct_less",
            "a_better",
            ["ct_cls", "ct_liver_seg", "imagenette_cls"],
            ["finetune", "linear"],
            note="The paper's data-scale evidence includes ImageNet-1k (E1, E4: RadNet-12M vs RadNet-1.28M).",
        ),
        _q(
            "C8b",
            "When in-domain pretraining data is scarce, natural-image pretraining is the better choice.",
            "natural",
            "ct_less",
            "a_better",
            ["ct_cls"],
            ["finetune", "linear"],
            note="Not in the paper's runs: the paper draws it from an interpolation over pool sizes. Its logged "
            "RadNet-1.28M is as large as ImageNet, so judging them would repeat C2's test with the sign flipped.",
        ),
        _q(
            "C9",
            "Mixed (natural + CT in one pool) pretraining performs like CT-only pretraining on a CT task.",
            "mixed",
            "ct",
            "no_difference",
            ["ct_cls"],
            ["finetune", "linear"],
            note=_E6E8,
        ),
        _q(
            "C10",
            "Sequential (natural, then CT) pretraining performs like CT-only pretraining on a CT task.",
            "sequential",
            "ct",
            "no_difference",
            ["ct_cls"],
            ["finetune", "linear"],
            note=_E6E8,
        ),
    )
)


def _p(experiment: str, task: str, fraction: float, metric: str, note: str = "") -> PaperCell:
    return PaperCell(experiment, task, fraction, metric, note)


_CTBR_E1, _CTBR_E4 = _p("E1", "RadNet-CTBR", 1.0, "accuracy"), _p("E4", "RadNet-CTBR", 1.0, "accuracy")
_LITS_E1, _LITS_E4 = _p("E1", "LiTS", 1.0, "dice_liver"), _p("E4", "LiTS", 1.0, "dice_liver")
_I1K_E1, _I1K_E4 = _p("E1", "ImageNet-1k", 1.0, "accuracy"), _p("E4", "ImageNet-1k", 1.0, "accuracy")
#: Claim id → (our task, our protocol) → the paper's matching runs.
PAPER_CELLS: dict[str, dict[tuple[str, str], PaperCell]] = {
    "C1": {("ct_cls", "finetune"): _CTBR_E1, ("ct_liver_seg", "finetune"): _LITS_E1},
    "C2": {("ct_cls", "linear"): _CTBR_E4},
    "C3": {
        ("ct_cls", "lowlabel_1"): _p("E2", "RadNet-CTBR", 0.01, "accuracy"),
        ("ct_cls", "lowlabel_10"): _p("E2", "RadNet-CTBR", 0.1, "accuracy"),
    },
    "C4": {("ct_liver_seg", "linear"): _LITS_E4, ("ct_liver_seg", "lowlabel_10"): _p("E2", "LiTS", 0.1, "dice_liver")},
    "C5": {
        ("xray_cls", "finetune"): _p("E1", "CX8", 1.0, "mean_auc", _CX8),
        ("xray_cls", "linear"): _p("E4", "CX8", 1.0, "mean_auc", _CX8),
        ("mri_cls", "finetune"): _p("E1", "BraTS", 1.0, "dice_mean", _BRATS),
        ("mri_cls", "linear"): _p("E4", "BraTS", 1.0, "dice_mean", _BRATS),
    },
    "C6": {
        ("imagenette_cls", "finetune"): _I1K_E1,
        ("imagenette_cls", "linear"): _I1K_E4,
        ("imagenette_cls", "lowlabel_1"): _p("E2", "ImageNet-1k", 0.01, "accuracy"),
    },
    "C8": {
        ("ct_cls", "finetune"): _CTBR_E1,
        ("ct_cls", "linear"): _CTBR_E4,
        ("ct_liver_seg", "finetune"): _LITS_E1,
        ("ct_liver_seg", "linear"): _LITS_E4,
        ("imagenette_cls", "finetune"): _I1K_E1,
        ("imagenette_cls", "linear"): _I1K_E4,
    },
    "C9": {
        ("ct_cls", "finetune"): _p("E6", "RadNet-CTBR", 1.0, "accuracy"),
        ("ct_cls", "linear"): _p("E8", "RadNet-CTBR", 1.0, "accuracy"),
    },
    "C10": {
        ("ct_cls", "finetune"): _p("E6", "RadNet-CTBR", 1.0, "accuracy"),
        ("ct_cls", "linear"): _p("E8", "RadNet-CTBR", 1.0, "accuracy"),
    },
}
ABSTRACT = {
    "C1": "+0.44 %, p = 0.541 (vs an interpolated RadNet-1.28M population)",
    "C2": "+2.07 %, p = 0.025 (vs an interpolated RadNet-1.28M population)",
    "C3": "+1.63 %, p = 0.114 at 1 % (vs an interpolated RadNet-1.28M population)",
}
NEEDS = {"C8": {"ct_less": _LESS}, "C8b": {"ct_less": _LESS}}

#: Roles → the paper's init names (``paper_runs.csv``). IxR = natural then RadNet (sequential, "IxRS" configs);
#: IxR_mixed = one pool of both ("IxRM" configs).
PAPER_ARMS = {
    "ct": "RadNet-1.28M",
    "natural": "ImageNet",
    "ct_more": "RadNet-12M",
    "ct_less": "RadNet-1.28M",
    "mixed": "IxR_mixed",
    "sequential": "IxR",
}
#: The sensitivity column of the paper's side: its larger CT encoder in the ``ct`` role.
PAPER_SENSITIVITY = {"ct": "RadNet-12M"}
PAPER_SCRATCH = "Scratch"
#: The pretraining domain whose own task each role's encoder must have learnt (the kNN sanity check).
ROLE_DOMAINS = {
    "ct": ("ct",),
    "ct_more": ("ct",),
    "ct_less": ("ct",),
    "natural": ("natural",),
    "mixed": ("ct", "natural"),
    "sequential": ("ct",),
}


def builtin_claims(margin_pct: float | None = None) -> tuple[Claim, ...]:
    """The paper's claims as the engine judges them; ``margin_pct`` (relative %) is their declared margin (``None``:
    none declared, the engine's ``margin_pct`` applies)."""
    margin = Margin(value=margin_pct, kind="relative", rationale=BUILTIN_RATIONALE) if margin_pct else None
    claims = []
    for q in QUESTIONS:
        claim = from_question(
            q,
            PAPER_CELLS.get(q.id),
            builtin=True,
            abstract_quoted=ABSTRACT.get(q.id, ""),
            needs=NEEDS.get(q.id),
            margin=margin,
        )
        claims.append(claim if margin else replace(claim, margins={}))
    return tuple(claims)


CLAIMS: tuple[Claim, ...] = builtin_claims()
CLAIM_IDS = tuple(c.id for c in CLAIMS)

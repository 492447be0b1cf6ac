"""The kNN sanity check behind the claims engine: did each pretrained encoder learn its own domain?

An encoder pretrained on a pool must classify its domain's task (``ct`` → ``ct_cls``, ``natural`` →
``imagenette_cls``: held-out images of the natural pool's own source, as the paper tests its natural encoders on
ImageNet) better by kNN (k = 20, cosine; :mod:`rtl_core.pretrain.knn`) than the same backbone at random
init, against each of several random seeds (McNemar's exact test on the same test images; the worst p counts).
An arm that fails is not a trained encoder in any sense a comparison could use, so the claims engine withholds
the verdicts that rest on it (Jonske et al. compare encoders that converged; a near-random one would make
"CT vs natural" a comparison with noise).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import nn

from rtl_core.analysis.stats import mcnemar_exact

#: The task on which an encoder of each pretraining domain must beat random init (the rows that gate claims).
DOMAIN_TASKS = {"ct": "ct_cls", "natural": "imagenette_cls"}
#: Further tasks measured the same way and reported beside, gating nothing: CUB-50 birds, the natural task the
#: demo's downstream grid uses (far harder at 32 px than the pool's own source).
REPORTED_TASKS = {"natural": ("natural_cls",)}
COLUMNS = [
    "init",
    "domain",
    "task",
    "gates",
    "knn_init",
    "knn_random",
    "knn_random_max",
    "mcnemar_p",
    "random_seeds",
    "n_test",
    "beats_random",
]
log = logging.getLogger(__name__)


def init_domains(init: str, domain: str | None = None) -> tuple[str, ...]:
    """The pretraining domains of an init (``domain`` as the config declares it, else the init's default;
    ``mixed`` has two; scratch and domains without a reference task none)."""
    from rtl_core.names import parse_init

    domain = domain or parse_init(init).default_domain()
    if domain == "mixed":
        return ("ct", "natural")
    return (domain,) if domain in DOMAIN_TASKS else ()


class Normalised(nn.Module):
    """An encoder fed its own input normalisation (``[0, 1]`` images in, ``(x - mean) / std`` to the encoder)."""

    def __init__(self, encoder: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder((x - self.mean) / self.std)


def patch_problem(encoder: nn.Module, size: int) -> str | None:
    """Why ``encoder`` cannot read ``size`` px images (a ViT patch size that does not divide it), else ``None``."""
    patch = getattr(getattr(encoder, "patch_embed", None), "patch_size", None)
    patch = patch[0] if isinstance(patch, (tuple, list)) else patch
    if patch and size % int(patch):
        return f"its patch size {int(patch)} does not divide the {size} px images"
    return None


def sanity_table(
    encoders: Mapping[str, nn.Module],
    arch: str | Mapping[str, str],
    size: int,
    seeds: Sequence[int],
    alpha: float = 0.05,
    domains: Mapping[str, str | None] | None = None,
    stats: Mapping[str, tuple] | None = None,
    reported: bool = True,
) -> pd.DataFrame:
    """One row per pretrained encoder and domain task: kNN accuracy of the encoder and of random inits (mean and
    best over ``seeds``), McNemar's p (worst over the seeds) and whether it beats every random init at ``alpha``.
    ``gates`` marks the domain's own task (:data:`DOMAIN_TASKS`); with ``reported`` the rows of
    :data:`REPORTED_TASKS` follow with ``gates`` false. ``arch`` is the backbone of the random inits: one for all,
    or each encoder's own (``init -> arch``, a study whose inits differ in architecture); an encoder that cannot
    read ``size`` px images (a ViT's patch size) is left out with a logged reason. The one kNN path of the
    package: the analysis's ``sanity.csv``, ``make bench``'s ``pretrain.knn_*`` keys and the pretraining notebook
    all come from here."""
    from rtl_core.data.datasets import task_dataset
    from rtl_core.pretrain.knn import knn_correct, knn_random_inits

    domains = domains or {}
    archs = {init: arch if isinstance(arch, str) else arch[init] for init in encoders}
    wanted = {}
    for init in encoders:
        problem = patch_problem(encoders[init], size)
        if problem is None:
            wanted[init] = init_domains(init, domains.get(init))
        else:
            log.warning("kNN sanity check: %s (%s) left out: %s", init, archs[init], problem)
    checks = [(domain, task, True) for domain, task in DOMAIN_TASKS.items()]
    if reported:
        checks += [(domain, task, False) for domain, tasks in REPORTED_TASKS.items() for task in tasks]
    rows = []
    for domain, task, gates in checks:
        inits = [i for i, domains in wanted.items() if domain in domains]
        if not inits:
            continue
        train, test = task_dataset(task, "train", size), task_dataset(task, "test", size)
        by_arch = {a: knn_random_inits(a, train, test, seeds) for a in dict.fromkeys(archs[i] for i in inits)}
        for init in inits:
            randoms = by_arch[archs[init]]  # the same backbone at random init
            mean, std = (stats or {}).get(init, (None, None))
            correct = knn_correct(
                Normalised(encoders[init], mean, std) if mean is not None else encoders[init], train, test
            )
            tests = [mcnemar_exact(correct.numpy(), r.numpy()) for r in randoms.values()]
            accs = [float(r.float().mean()) for r in randoms.values()]
            acc = float(correct.float().mean())
            worst = max(p for _, _, p in tests)
            rows.append(
                {
                    "init": init,
                    "domain": domain,
                    "task": task,
                    "gates": gates,
                    "knn_init": acc,
                    "knn_random": sum(accs) / len(accs),
                    "knn_random_max": max(accs),
                    "mcnemar_p": worst,
                    "random_seeds": len(accs),
                    "n_test": len(correct),
                    "beats_random": bool(acc > max(accs) and worst < alpha),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)

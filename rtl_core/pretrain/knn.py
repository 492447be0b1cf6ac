"""k-nearest-neighbour accuracy of frozen features: the standard quick check of an SSL encoder.

Features are the backbone's pooled outputs, L2-normalised; each test image takes the similarity-weighted vote
(weights ``exp(cos / t)``, t = 0.1) of its ``k`` most cosine-similar train images (Wu et al. 2018, the kNN
monitor of SimCLR/MoCo codebases), via lightly's ``knn_predict``. Example::

    encoder, _ = load_encoder(encoder_stem("natural", "simclr", "default"))
    acc = knn_accuracy(encoder, task_dataset("natural_cls", "train"), task_dataset("natural_cls", "test"))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from lightly.utils.benchmarking import knn_predict
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rtl_core.models.devices import default_device


def knn_image_size(crop_size: int) -> int:
    """The image size kNN checks run at: the encoder's pretraining crop (``pretrain.crop_size``), the scale its
    views showed it a whole image at. Measured on the default profile (issue "a demo study worth reading"): at
    the 64 px pool resolution SimCLR(natural) scored 0.266-0.307 on Imagenette against random inits' 0.273, at its
    32 px crop size 0.309-0.324 against 0.262 (random features do better, trained ones worse, at a scale the
    encoder never saw)."""
    return int(crop_size)


@torch.no_grad()
def extract_features(
    encoder: nn.Module, dataset: Dataset, batch_size: int = 256, device: str | torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised features ``(N, D)`` (float32, CPU) and labels ``(N,)`` of a labelled dataset."""
    device = default_device(device)
    was_training = encoder.training
    encoder.eval().to(device)
    features, labels = [], []
    for images, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images = images.to(device).contiguous(memory_format=torch.channels_last)
        features.append(F.normalize(encoder(images).float(), dim=1).cpu())
        labels.append(torch.as_tensor(targets))
    encoder.train(was_training)
    return torch.cat(features), torch.cat(labels)


def knn_correct(
    encoder: nn.Module, train_ds: Dataset, test_ds: Dataset, k: int = 20, temperature: float = 0.1
) -> torch.Tensor:
    """Per test image, whether weighted kNN (cosine, ``k`` neighbours, ``train_ds`` as the bank) is right."""
    bank, bank_labels = extract_features(encoder, train_ds)
    queries, labels = extract_features(encoder, test_ds)
    num_classes = int(max(bank_labels.max(), labels.max())) + 1
    k = min(k, len(bank))
    predicted = torch.cat(
        [
            knn_predict(chunk, bank.T, bank_labels, num_classes, knn_k=k, knn_t=temperature)[:, 0]
            for chunk in queries.split(1024)
        ]
    )
    return predicted == labels


def knn_accuracy(
    encoder: nn.Module, train_ds: Dataset, test_ds: Dataset, k: int = 20, temperature: float = 0.1
) -> float:
    """Top-1 accuracy of weighted kNN (cosine, ``k`` neighbours) on ``test_ds`` with ``train_ds`` as the bank."""
    return float(knn_correct(encoder, train_ds, test_ds, k, temperature).float().mean())


def knn_random_inits(arch: str, train_ds: Dataset, test_ds: Dataset, seeds: Sequence[int]) -> dict[int, torch.Tensor]:
    """Per-image kNN correctness on ``test_ds`` (``train_ds`` as the bank) of backbone ``arch`` at a random init, one
    per seed: the baseline an SSL encoder must beat (one random draw alone varies by more than a weak encoder's
    margin)."""
    from rtl_core.models.backbones import build_backbone

    out = {}
    for seed in seeds:
        torch.manual_seed(seed)
        out[int(seed)] = knn_correct(build_backbone(arch), train_ds, test_ds)
    return out

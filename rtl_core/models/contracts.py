"""Input contracts: what an encoder expects of its input images, and the exact conversions of a task's images to it.

Every init carries an :class:`InputContract` (channels, value range, mean / std, and the CT window where its
makers state one). The study's tasks give images as floats in ``[0, 1]`` with three channels (grey images
replicated, see :mod:`rtl_core.data.datasets`). :func:`plan_conversion` checks a task against a contract and
returns the :class:`InputStage` that maps the task's images onto the contract's inputs, and the conversions it
applies, recorded with the run:

* channels: grey (three equal channels) → 1 channel by taking one of them; a 1-channel task → 3 channels by
  repetition. Colour images into a 1-channel encoder have no exact conversion and are refused.
* value range: ``[0, 1]`` → ``[lo, hi]`` by the affine map ``lo + x (hi - lo)`` (TorchXRayVision's
  ``[-1024, 1024]``, Keras' ``[0, 255]``).
* then ``(x - mean) / std`` per channel (the contract's normalisation; identity when absent).

The input issues of TorchXRayVision (1-channel, ``[-1024, 1024]``; Cohen et al. 2022, "TorchXRayVision: A library
of chest X-ray datasets and models") and of the other public encoders are silent when ignored; this module makes
every mismatch either an exact, recorded conversion or an error naming both sides and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from rtl_core.errors import ConfigError

#: The value range of the study's task images (floats from ``uint8`` / 255 or a CT window).
TASK_RANGE = (0.0, 1.0)
#: The keys of ``evaluate.init_details.<init>`` that declare an init's input contract (they change its runs).
CONTRACT_KEYS = ("channels", "value_range", "mean", "std", "window")


@dataclass(frozen=True)
class InputContract:
    """What an encoder takes: ``channels`` (1 or 3), ``value_range`` of the pixel values before normalisation,
    per-channel ``mean`` / ``std`` applied after the range, the CT ``window`` (level, width in HU) its makers
    state (``None``: not stated), and where the contract comes from (``source``)."""

    channels: int = 3
    value_range: tuple[float, float] = TASK_RANGE
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    window: tuple[float, float] | None = None
    source: str = "default"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ConfigError(f"input contract ({self.source}): channels must be 1 or 3, got {self.channels}.")
        lo, hi = self.value_range
        if not hi > lo:
            raise ConfigError(f"input contract ({self.source}): value_range {list(self.value_range)} must rise.")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if len(values) not in (1, self.channels):
                raise ConfigError(
                    f"input contract ({self.source}): {name} has {len(values)} values for a {self.channels}-channel "
                    f"encoder; give 1 or {self.channels} (evaluate.init_details.<init>.{name})."
                )
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"input contract ({self.source}): std must be positive, got {list(self.std)}.")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (lists for tuples): kept in the run record's ``init_info.contract``."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> InputContract:
        fields = dict(values)
        for key in ("value_range", "mean", "std", "window"):
            if fields.get(key) is not None:
                fields[key] = tuple(float(v) for v in fields[key])
        return cls(**fields)

    def with_details(self, details: Mapping[str, Any] | None, init: str) -> InputContract:
        """This contract with what ``evaluate.init_details[init]`` declares (channels, value_range, mean, std,
        window) in place of the layout's defaults."""
        declared = {k: details[k] for k in CONTRACT_KEYS if details and details.get(k) is not None}
        if not declared:
            return self
        fields = {**self.as_dict(), **declared, "source": f"{self.source}; declared in evaluate.init_details[{init!r}]"}
        return InputContract.from_dict(fields)


class InputStage(nn.Module):
    """Task images in ``[0, 1]`` (3 channels) → the encoder's inputs: channel selection / repetition, the affine
    value-range map, then ``(x - mean) / std``. Statistics are buffers (they follow the model's device)."""

    def __init__(self, contract: InputContract, channels: str = "same") -> None:
        super().__init__()
        self.channels = channels  # "same" | "first" (grey 3 → 1) | "repeat" (1 → 3)
        lo, hi = contract.value_range
        self.scale, self.offset = float(hi - lo), float(lo)
        self.register_buffer("mean", torch.tensor(contract.mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(contract.std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == "first":
            x = x[:, :1]
        elif self.channels == "repeat":
            x = x.expand(-1, 3, -1, -1)
        if self.scale != 1.0 or self.offset != 0.0:
            x = x * self.scale + self.offset
        return (x - self.mean) / self.std


def unconverted_inputs(contract: Mapping[str, Any] | None) -> str | None:
    """What of ``contract`` a reader that feeds 3-channel ``[0, 1]`` images with mean / std only (the feature-space
    analysis, the advisor) would get wrong, in words (``"1 channel, values in [-1024, 1024]"``); ``None`` when
    nothing: such a reader must leave the encoder out rather than feed it silently wrong inputs."""
    if not contract:
        return None
    c = InputContract.from_dict(contract)
    wrong = [f"{c.channels} channel" for _ in [0] if c.channels != 3]
    if tuple(c.value_range) != TASK_RANGE:
        wrong.append(f"values in [{c.value_range[0]:g}, {c.value_range[1]:g}]")
    return ", ".join(wrong) or None


def is_grey(images: torch.Tensor) -> bool:
    """Whether ``(N, C, H, W)`` images have one channel or three equal ones (exactly: the pack's grey images are
    replicated, so a single differing pixel makes them colour)."""
    if images.shape[1] == 1:
        return True
    return bool(torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2]))


def plan_conversion(
    contract: InputContract,
    task_channels: int,
    grey: bool,
    init: str,
    task: str,
    value_range: Sequence[float] = TASK_RANGE,
) -> tuple[InputStage, list[str]]:
    """The :class:`InputStage` that feeds ``task``'s images (``task_channels`` channels, ``grey`` when they are equal
    (:func:`is_grey`), values in ``value_range``) to an encoder with ``contract``, and the exact conversions it
    applies (empty: none). Raises :class:`ConfigError` naming the init, the task and the fix when no exact
    conversion exists."""
    conversions: list[str] = []
    channels = "same"
    if contract.channels == 1 and task_channels == 3:
        if not grey:
            raise ConfigError(
                f"Init {init!r} takes 1-channel (grey) images ({contract.source}) but task {task!r} has colour "
                "images (3 different channels); no conversion is exact. Drop the init from evaluate.inits for this "
                "task, or use a 3-channel init."
            )
        channels = "first"
        conversions.append("grey 3 channels -> 1 channel (the first of three equal channels)")
    elif contract.channels == 3 and task_channels == 1:
        channels = "repeat"
        conversions.append("grey 1 channel -> 3 channels (repeated)")
    elif contract.channels != task_channels:
        raise ConfigError(
            f"Init {init!r} takes {contract.channels} channel(s) but task {task!r} has {task_channels}; "
            "declare evaluate.init_details.<init>.channels to match or drop the init."
        )
    task_lo, task_hi = (float(v) for v in value_range)
    if (task_lo, task_hi) != TASK_RANGE:
        raise ConfigError(
            f"task {task!r} gives values in {[task_lo, task_hi]}, not {list(TASK_RANGE)}; only [0, 1] images have an "
            f"exact map onto init {init!r}'s range {list(contract.value_range)}."
        )
    if tuple(contract.value_range) != TASK_RANGE:
        lo, hi = contract.value_range
        conversions.append(f"values [0, 1] -> [{lo:g}, {hi:g}] (x * {hi - lo:g} + {lo:g})")
    return InputStage(contract, channels), conversions

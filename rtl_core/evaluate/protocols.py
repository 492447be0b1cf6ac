"""Evaluation protocols (Jonske et al. 2025, experiments E1/E2/E4): one registry, one small spec each.

==================  ====================================================================================
``finetune``        every weight trains on the (capped) training split
``linear``          frozen encoder, BatchNorm in eval mode (standard linear evaluation); only the head
                    trains, on cached features when ``evaluate.linear_on_features`` (segmentation: the
                    U-Net decoder trains, the encoder stays frozen)
``linear_bn_train`` paper parity: the encoder's weights are frozen but its BatchNorm layers stay in train
                    mode, so their running statistics adapt to the task (as the paper's code did)
``lowlabel_10``     fine-tune on the nested 10 % subset of the training split (per seed)
``lowlabel_1``      fine-tune on the nested 1 % subset (⊂ the 10 % one)
==================  ====================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from rtl_core.errors import ConfigError


@dataclass(frozen=True)
class Protocol:
    name: str
    data_fraction: float  # share of the training split (1.0 = all of it, or the cap)
    frozen_encoder: bool
    bn_train: bool = False  # frozen encoder whose BatchNorm statistics keep updating

    @property
    def lowlabel(self) -> bool:
        return self.data_fraction < 1.0


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("finetune", 1.0, frozen_encoder=False),
        Protocol("linear", 1.0, frozen_encoder=True),
        Protocol("linear_bn_train", 1.0, frozen_encoder=True, bn_train=True),
        Protocol("lowlabel_10", 0.1, frozen_encoder=False),
        Protocol("lowlabel_1", 0.01, frozen_encoder=False),
    )
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"evaluate.protocols: unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}.")
    return PROTOCOLS[name]

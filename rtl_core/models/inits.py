"""Loading the encoder an init names (the grammar is :mod:`rtl_core.names`): random init, our checkpoints,
torchvision weights, weights files; with the checkpoint checks that name the fix when weights are missing.
"""

from __future__ import annotations

import torch
from torch import nn

from rtl_core.config import study_option
from rtl_core.config.backbones import check_patch_size
from rtl_core.errors import CheckpointError
from rtl_core.models.backbones import build_backbone, feature_dim, is_known_backbone
from rtl_core.models.checkpoints import IDENTITY_MEAN, IDENTITY_STD, checkpoint_paths, input_normalization, load_encoder
from rtl_core.models.contracts import InputContract
from rtl_core.names import Init, parse_init

#: Input normalisation when a checkpoint's sidecar has no ``normalize`` entry (see ``input_normalization``).
DEFAULT_MEAN, DEFAULT_STD = IDENTITY_MEAN, IDENTITY_STD


def check_checkpoint(init: Init, profile: str, replicate: int = 0) -> None:
    """Raise :class:`CheckpointError` naming the fix when the init's weights are missing: the ``rtl pretrain``
    command for ours, the file for ``file:``, the hub folder for ``torchvision:`` (nothing is downloaded here).
    ``profile`` is the study's name; the command selects it as :func:`rtl_core.config.study_option` says
    (``--config <file>`` for a custom study, ``--profile <name>`` for a stock one); ``replicate`` names which of a
    replicated arm's encoders (``pretrain.replicates``)."""
    if init.kind == "file":
        if not init.file.is_file():
            raise CheckpointError(
                f"Init {init.name!r}: weights file {init.file} does not exist. "
                "Fix the path (or the variables in it) or drop the init from evaluate.inits."
            )
        return
    if init.kind == "torchvision":
        from rtl_core.models.foreign import torchvision_file

        torchvision_file(init.arch, init.weights)  # unknown arch / weights fail here, before any run
        return
    stem = init.stem(profile, replicate)
    if stem is None:
        return
    weights, sidecar = checkpoint_paths(stem)
    if not (weights.is_file() and sidecar.is_file()):
        option = study_option(profile)
        raise CheckpointError(
            f"Init {init.name!r} needs the encoder checkpoint {weights} (+ {sidecar.name}), which does not exist. "
            f"Create it with `{init.pretrain_command(profile, option, replicate)}` (or `rtl pretrain {option}` for "
            f"every pool and replicate of the config), or drop {init.name!r} from evaluate.inits."
        )


def own_arch(init: Init, study_arch: str, declared: str | None, found: str, layout: str) -> str:
    """The architecture an outside init brings: torchvision's ``<arch>``, or the one a file's layout names
    (:mod:`rtl_core.models.layouts`: a DINOv2-size ViT is ``timm:vit_small_patch14_dinov2``, TorchXRayVision's
    DenseNet ``timm:densenet121``). A layout that only describes its model (a ViT of no DINOv2 size) takes the
    ``evaluate.init_details.<init>.arch`` declared for it; with neither, the file must be the study's backbone
    (as before inits carried their own architecture). A declaration that contradicts the layout is refused."""
    if init.kind == "torchvision":
        return init.arch
    if is_known_backbone(found):
        if declared is not None and declared != found:
            raise CheckpointError(
                f"Init {init.name!r}: evaluate.init_details declares arch {declared!r} but {init.file} holds a "
                f"{found} ({layout}). Remove the declaration or set it to {found!r}."
            )
        return found
    if declared is not None:
        return declared
    if found != study_arch:
        raise CheckpointError(
            f"Init {init.name!r}: {init.file} holds a {found} ({layout}), which names no backbone, and the "
            f"study's backbone is {study_arch}. Declare the timm model it is in evaluate.init_details "
            f"(e.g. '{init.name}': {{arch: 'timm:<model>'}}) or use a {study_arch} file."
        )
    return study_arch


def load_init(
    name: str, profile: str, arch: str, seed: int, details: dict | None = None, replicate: int = 0
) -> tuple[nn.Module, dict]:
    """The encoder an init starts from (a pooled-feature backbone: ``forward`` gives ``(N, feature_dim)``) and its
    info (``{"init", "arch", "checkpoint", "mean", "std", "contract", "layout", "label", "domain", "sidecar"}``;
    ``contract``: :class:`~rtl_core.models.contracts.InputContract` as a dict). ``arch`` is the encoder's own
    architecture (:func:`own_arch`): the study's backbone ``arch`` for ``scratch`` and our checkpoints, the
    file's or torchvision's for the others. ``details`` are the config's ``evaluate.init_details[name]`` (label,
    domain, arch, input contract of file inits); ``replicate`` picks one of a replicated arm's encoders (ours
    only; ``pretrain.replicates``)."""
    from rtl_core.models.foreign import load_file_encoder, load_torchvision_encoder

    init = parse_init(name)
    details = details or {}
    label = details.get("label") or init.default_label()
    domain = details.get("domain") or init.default_domain()
    base = {"init": name, "label": label, "domain": domain}
    if init.kind == "scratch":
        torch.manual_seed(seed)
        return build_backbone(arch), {
            **base,
            "arch": arch,
            "checkpoint": None,
            "mean": DEFAULT_MEAN,
            "std": DEFAULT_STD,
            "contract": InputContract(mean=DEFAULT_MEAN, std=DEFAULT_STD, source="random init").as_dict(),
            "layout": "random init",
            "sidecar": {},
        }
    check_checkpoint(init, profile, replicate)
    if init.kind in ("file", "torchvision"):
        if init.kind == "file":
            encoder, found = load_file_encoder(init.file, None)
        else:
            encoder, found = load_torchvision_encoder(init.arch, init.weights)
        contract = found["contract"].with_details(details, name)  # the layout's, or evaluate.init_details'
        own = own_arch(init, arch, details.get("arch"), found["arch"], found["layout"])
        width = getattr(encoder, "num_features", None)  # timm models; torchvision's ResNets are named exactly
        if width is not None and is_known_backbone(own) and int(width) != feature_dim(own):
            raise CheckpointError(
                f"Init {name!r}: {found['checkpoint']} gives {width} features but {own} gives {feature_dim(own)} "
                f"({found['layout']}). Set evaluate.init_details.{name}.arch to the timm model it was saved from."
            )
        return encoder, {
            **base,
            "arch": own,
            "checkpoint": found["checkpoint"],
            "mean": contract.mean,
            "std": contract.std,
            "contract": contract.as_dict(),
            "layout": found["layout"],
            "sidecar": found.get("sidecar", {}),
        }
    stem = init.stem(profile, replicate)
    encoder, sidecar = load_encoder(stem, expect={"arch": arch, "in_channels": 3})
    mean, std = input_normalization(sidecar)
    info = {
        **base,
        "arch": arch,
        "checkpoint": str(checkpoint_paths(stem)[0]),
        "mean": mean,
        "std": std,
        "contract": InputContract(mean=mean, std=std, source="rtl_core checkpoint sidecar").as_dict(),
        "layout": "rtl_core checkpoint",
        "sidecar": {
            k: sidecar.get(k)
            for k in (
                "method",
                "pool",
                "epochs",
                "profile",
                "config_hash",
                "data_fingerprint",
                "git_commit",
                "replicate",
                "seed",
            )
        },
    }
    return encoder, info


def check_encoder_input(encoder: nn.Module, size: int, where: str, name: str, arch: str) -> None:
    """:class:`ConfigError` naming the fix when the patch size of ``encoder`` (a ViT's ``patch_embed``; a CNN has
    none) does not divide the image side ``size`` set at ``where``: read off the loaded model, so a file's own
    patch size counts (``arch`` and the init ``name`` go into the message)."""
    patch = getattr(getattr(encoder, "patch_embed", None), "patch_size", None)
    if isinstance(patch, (tuple, list)):
        patch = patch[0]
    check_patch_size(int(patch) if patch else None, size, where, f"init {name!r} ({arch})")

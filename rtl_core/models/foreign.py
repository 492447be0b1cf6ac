"""Encoders from outside the study: weight files in known layouts and torchvision's pretrained weights.

``file:<path>`` accepts (each recognised and reported, see :func:`read_encoder_state`):

* a plain torchvision ResNet ``state_dict`` (``fc.*`` dropped) — also the paper's published
  ``encoder_pretrained.tar`` encoders, torchvision keys without ``fc.*``;
* the paper's fine-tuned files: ``encoder.*`` + ``head.*`` (classification), ``unet.backbone.*`` (segmentation);
* ``module.`` prefixes of DataParallel / DDP;
* Lightning / lightly checkpoints (``{"state_dict": …}`` with ``backbone.`` or ``encoder.`` prefixes; projection
  and prediction heads, momentum copies and classifiers dropped);
* ``.safetensors`` files (e.g. ``rtl export``'s, whose metadata carry the architecture and input contract);
* the public encoders of :mod:`rtl_core.models.layouts`: RadImageNet's ResNet-50 (PyTorch port),
  TorchXRayVision's DenseNet-121 and ResNet-50 (1-channel), DINOv2 / RAD-DINO ViTs in timm or Hugging Face keys.

Each layout brings its input contract (:mod:`rtl_core.models.contracts`): channels, value range, mean / std.

Loading is strict: after the documented prefixes and heads are removed, every key must match the study's
backbone exactly; a missing or unexpected key is a :class:`CheckpointError` that lists them (the paper's own
fine-tuning code loads with ``strict=False``, which leaves a layer at random without a word). The architecture
is inferred from the keys (ResNet-18/34/50) and checked against an expected one where the caller gives it; an
init evaluates a file as its own architecture (:func:`rtl_core.models.inits.own_arch`). Files are read with
``torch.load(..., weights_only=True)``; one that needs arbitrary pickles is refused with a way to convert it.

``torchvision:<arch>:<WEIGHTS>`` reads torchvision's weights enum (e.g. ``IMAGENET1K_V2``) from the folder torch
hub uses (``$TORCH_HOME/hub/checkpoints``), downloading only when the file is absent; the weights' own
preprocessing (mean / std) is applied.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rtl_core.errors import CheckpointError
from rtl_core.models.backbones import BACKBONES, build_backbone
from rtl_core.models.checkpoints import torch_file_problem
from rtl_core.models.contracts import InputContract
from rtl_core.models.layouts import (  # noqa: F401 (IMAGENET_MEAN / _STD: kept importable from here)
    DROPPED_BUFFERS,
    DROPPED_HEADS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RADIMAGENET_CONTRACT,
    XRV_CONTRACT,
    Layout,
    build_densenet,
    build_radimagenet_resnet50,
    build_vit,
    densenet_layout,
    is_radimagenet,
    vit_layout,
)


def infer_arch(state: dict[str, torch.Tensor]) -> str:
    """ResNet-18, -34 or -50 from a torchvision-keyed state dict (bottleneck blocks; blocks in layer3)."""
    if "layer1.0.conv3.weight" in state:
        blocks = {int(k.split(".")[1]) for k in state if k.startswith("layer3.")}
        if len(blocks) == 6:
            return "resnet50"
        raise CheckpointError(
            f"a bottleneck ResNet with {len(blocks)} blocks in layer3 is not supported; "
            f"supported: {', '.join(BACKBONES)}."
        )
    if "layer1.0.conv1.weight" not in state:
        raise CheckpointError("no ResNet encoder keys (layer1.0.conv1.weight) found.")
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("layer3.")}
    return "resnet34" if len(blocks) == 6 else "resnet18"


def _read(path: Path) -> tuple[Any, dict[str, str]]:
    """The raw object in ``path`` and any metadata (safetensors)."""
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist. Fix the path after 'file:' in evaluate.inits.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 (a handle, not a dict)
                return tensors, dict(handle.metadata() or {})
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file ({exc}).") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True), {}
    except Exception as exc:  # torch raises several types for damaged files
        error = exc
    problem = torch_file_problem(path)  # random bytes end in an UnpicklingError too: not a pickle's fault
    if problem is not None:
        raise CheckpointError(
            f"{path} cannot be loaded: {problem}. Check the path after 'file:' in evaluate.inits, or copy the "
            "weights file again from where it was made (a torch.save file, or .safetensors)."
        ) from None
    if isinstance(error, pickle.UnpicklingError):
        raise CheckpointError(
            f"{path} needs arbitrary Python pickles to load, which rtl_core refuses (torch.load weights_only=True). "
            "Convert it once, on a machine where you trust the file: load it with PyTorch's full unpickler "
            "(weights_only=False), then `torch.save(obj['state_dict'] if 'state_dict' in obj else obj, 'encoder.pt')` "
            f"(plain tensors only) and use file:encoder.pt. ({str(error).splitlines()[0]})"
        ) from None
    if isinstance(error, (RuntimeError, EOFError, OSError)):
        raise CheckpointError(f"{path} cannot be read as a PyTorch weights file ({error}).") from error
    raise error


def _unwrap(path: Path) -> tuple[dict[str, torch.Tensor], list[str], dict[str, str]]:
    """The flat state dict in ``path`` (a checkpoint's ``state_dict`` / ``model``, ``module.`` removed), what was
    unwrapped, and any metadata."""
    obj, meta = _read(path)
    layout = []
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj, layout = obj["state_dict"], ["Lightning/lightly checkpoint (state_dict)"]
    elif (
        isinstance(obj, dict)
        and isinstance(obj.get("model"), dict)
        and not any(torch.is_tensor(v) for v in obj.values())
    ):
        obj, layout = obj["model"], ["checkpoint dict (model)"]
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(
            f"{path} holds no state dict of tensors (found {type(obj).__name__}); save "
            "`model.state_dict()` of a torchvision ResNet."
        )
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
        layout.append("DataParallel/DDP 'module.' prefix removed")
    return state, layout, meta


def read_encoder_state(path: str | Path) -> tuple[dict[str, torch.Tensor], str, dict[str, str]]:
    """The encoder's torchvision-keyed ResNet state dict in ``path``, a description of the layout found, and
    metadata."""
    path = Path(path).expanduser()
    state, layout, meta = _unwrap(path)
    return (*_resnet_state(state, layout, path), meta)


def _resnet_state(state: dict[str, torch.Tensor], layout: list[str], path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The torchvision ResNet keys of ``state`` (under the shortest prefix; heads dropped) and the layout text."""
    anchor = "layer1.0.conv1.weight"
    prefixes = sorted({k[: -len(anchor)] for k in state if k.endswith(anchor)}, key=len)
    prefixes = [p for p in prefixes if not any(part in DROPPED_HEADS for part in p.split(".")[:-1])]
    if not prefixes:
        sample = sorted(state)[:6]
        raise CheckpointError(
            f"{path}: no ResNet encoder found (no key ending in {anchor} outside a head; keys start "
            f"with {sample}). Expected torchvision ResNet keys, optionally under a prefix such as "
            "'backbone.', 'encoder.' or 'unet.backbone.'."
        )
    prefix = prefixes[0]
    encoder, dropped, unexpected = {}, set(), []
    for key, value in state.items():
        parts = key.split(".")
        if parts[-1] in DROPPED_BUFFERS:
            dropped.add(key)
            continue
        if key.startswith(prefix) and not (prefix == "" and parts[0] in DROPPED_HEADS):
            inner = key[len(prefix) :]
            if inner.split(".")[0] == "fc":
                dropped.add(f"{prefix}fc")
            else:
                encoder[inner] = value
            continue
        head = next((i for i, part in enumerate(parts[:-1]) if part in DROPPED_HEADS), None)
        if head is None:
            unexpected.append(key)
        else:
            dropped.add(".".join(parts[: head + 1]))
    if unexpected:
        raise CheckpointError(
            f"{path}: keys outside the encoder ({prefix or 'no prefix'!r}) that no rule drops: "
            f"{unexpected[:10]}{' …' if len(unexpected) > 10 else ''}. Remove them or save the "
            "encoder alone."
        )
    layout.append(f"encoder keys under {prefix!r}" if prefix else "plain torchvision state dict")
    if dropped:
        layout.append(f"dropped: {', '.join(sorted(dropped))}")
    if path.suffix == ".safetensors":
        layout.insert(0, "safetensors")
    return encoder, "; ".join(layout)


def read_layout(path: str | Path) -> tuple[dict[str, torch.Tensor], Layout, dict[str, str]]:
    """The encoder state dict in ``path`` in the keys of the model that loads it, its recognised :class:`Layout`
    (name, architecture, default input contract) and metadata; see the module docs and
    :mod:`rtl_core.models.layouts` for the layouts."""
    path = Path(path).expanduser()
    state, notes, meta = _unwrap(path)
    head = (["safetensors"] if path.suffix == ".safetensors" else []) + notes
    for recognise in (densenet_layout, vit_layout):
        found = recognise(state, str(path))
        if found is not None:
            encoder, layout = found
            layout.name = "; ".join([*head, layout.name])
            return encoder, layout, meta
    encoder, text = _resnet_state(state, notes, path)
    arch = infer_arch(encoder)
    if is_radimagenet(encoder):
        if arch != "resnet50":
            raise CheckpointError(f"{path}: a ResNet with convolution biases that is not a ResNet-50 ({arch}).")
        name = f"RadImageNet ResNet-50 (PyTorch port: convolution biases, Keras strides); {text}"
        return encoder, Layout(name, arch, "radimagenet", RADIMAGENET_CONTRACT), meta
    channels = int(encoder["conv1.weight"].shape[1]) if "conv1.weight" in encoder else 3
    if channels == 1:
        name = f"TorchXRayVision ResNet (1-channel torchvision {arch}); {text}"
        return encoder, Layout(name, arch, "resnet", XRV_CONTRACT, {"in_channels": 1}), meta
    return encoder, Layout(text, arch, "resnet", InputContract(source="torchvision ResNet layout")), meta


def load_strict(encoder_state: dict[str, torch.Tensor], arch: str, source: str, in_channels: int = 3) -> nn.Module:
    """``build_backbone(arch)`` with ``encoder_state`` loaded strictly; the error lists missing / unexpected keys."""
    found = infer_arch(encoder_state)
    if found != arch:
        raise CheckpointError(
            f"{source} holds a {found} encoder but the study's backbone is {arch}; set "
            f"pretrain.backbone: {found} in the config (or use a {arch} file)."
        )
    return strict_into(build_backbone(arch, in_channels=in_channels), encoder_state, source, f"torchvision's {arch}")


def strict_into(model: nn.Module, encoder_state: dict[str, torch.Tensor], source: str, what: str) -> nn.Module:
    """``model`` with ``encoder_state`` loaded strictly (``what`` names the model in the error, which lists the
    first missing / unexpected keys and wrongly shaped tensors)."""
    wanted = set(model.state_dict())
    # BatchNorm's step counter is absent from files saved before PyTorch 0.4.1 (torchvision's older ImageNet
    # weights among them); it is unused in eval mode and with a momentum, so it is the one key filled in (zeros).
    encoder_state = {
        **{k: torch.zeros((), dtype=torch.long) for k in wanted if k.endswith(".num_batches_tracked")},
        **encoder_state,
    }
    missing, unexpected = sorted(wanted - set(encoder_state)), sorted(set(encoder_state) - wanted)
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: the encoder does not match {what}: missing keys {missing[:10]}"
            f"{' …' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}"
            f"{' …' if len(unexpected) > 10 else ''}. No layer is left at random: fix the file."
        )
    shapes = [k for k, v in model.state_dict().items() if tuple(v.shape) != tuple(encoder_state[k].shape)]
    if shapes:
        k = shapes[0]
        raise CheckpointError(
            f"{source}: {len(shapes)} tensor(s) have the wrong shape, e.g. {k}: "
            f"{tuple(encoder_state[k].shape)} vs {tuple(model.state_dict()[k].shape)} in {what}. Fix the file, or "
            "set pretrain.backbone to the architecture it was saved from."
        )
    model.load_state_dict(encoder_state, strict=True)
    return model


def build_layout(state: dict[str, torch.Tensor], layout: Layout, source: str) -> nn.Module:
    """The model of ``layout`` (by the library that defines it) with ``state`` loaded strictly."""
    if layout.family == "resnet":
        return load_strict(state, layout.arch, source, layout.options.get("in_channels", 3))
    if layout.family == "radimagenet":
        return strict_into(build_radimagenet_resnet50(), state, source, "the RadImageNet port's ResNet-50")
    if layout.family == "densenet":
        model = build_densenet(layout.arch, layout.options["in_channels"])
        return strict_into(model, state, source, layout.arch)
    return strict_into(build_vit(layout.options), state, source, f"timm's VisionTransformer ({layout.arch})")


def load_file_encoder(path: str | Path, arch: str | None) -> tuple[nn.Module, dict[str, Any]]:
    """An encoder from a weights file in a known layout, checked against the study's backbone ``arch`` (``None``:
    any); info has the layout, its architecture, the file, the :class:`InputContract` (the layout's default, or
    the one ``rtl export`` wrote in the metadata) and the sidecar of an exported encoder."""
    path = Path(path).expanduser().resolve()
    state, layout, meta = read_layout(path)
    if arch is not None and layout.arch != arch:
        raise CheckpointError(
            f"{path} holds a {layout.arch} encoder but the study's backbone is {arch}; set "
            f"pretrain.backbone: {layout.arch} in the config (or use a {arch} file). Layout: {layout.name}."
        )
    model = build_layout(state, layout, str(path))
    contract = layout.contract
    if "contract" in meta:
        contract = InputContract.from_dict({**json.loads(meta["contract"]), "source": f"metadata of {path.name}"})
    elif "normalize" in meta:
        norm = json.loads(meta["normalize"])
        contract = replace(
            contract, mean=tuple(norm["mean"]), std=tuple(norm["std"]), source=f"metadata of {path.name}"
        )
    info: dict[str, Any] = {"checkpoint": str(path), "layout": layout.name, "arch": layout.arch, "contract": contract}
    info["mean"], info["std"] = contract.mean, contract.std
    if "sidecar" in meta:
        info["sidecar"] = json.loads(meta["sidecar"])
    return model, info


def torchvision_weights(arch: str, weights: str):
    """torchvision's weights enum member ``weights`` of ``arch`` (``ConfigError``-style message when unknown)."""
    from torchvision.models import get_model_weights

    if arch not in BACKBONES:
        raise CheckpointError(f"torchvision:{arch}: unknown architecture; supported: {', '.join(BACKBONES)}.")
    enum = get_model_weights(arch)
    try:
        return enum[weights]
    except KeyError:
        raise CheckpointError(
            f"torchvision:{arch}:{weights}: unknown weights; {arch} has {[w.name for w in enum]}."
        ) from None


def torchvision_file(arch: str, weights: str) -> Path:
    """Where torch hub keeps (or would keep) the file of ``torchvision:<arch>:<weights>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(torchvision_weights(arch, weights).url).name


def load_torchvision_encoder(arch: str, weights: str, download: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """torchvision's pretrained ``arch`` with ``weights`` as a pooled-feature encoder (``fc`` dropped), read from
    ``$TORCH_HOME/hub/checkpoints`` (downloaded there first when absent and ``download``), with the weights'
    own preprocessing (mean / std) in the info."""
    entry = torchvision_weights(arch, weights)
    path = torchvision_file(arch, weights)
    if not path.is_file() and download:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(entry.url, str(path), progress=False)
        except Exception as exc:  # no network, proxy, HTTP error: the fix is the same
            raise CheckpointError(
                f"torchvision:{arch}:{weights} needs {path.name} ({entry.url}), which is not in {path.parent} and "
                f"could not be downloaded ({type(exc).__name__}). Place the file in that folder "
                "($TORCH_HOME/hub/checkpoints, or ~/.cache/torch/hub/checkpoints) and rerun."
            ) from None
    if not path.is_file():
        raise CheckpointError(f"torchvision:{arch}:{weights}: {path} is missing; place {path.name} in {path.parent}.")
    state, layout, _ = read_encoder_state(path)
    model = load_strict(state, arch, f"torchvision:{arch}:{weights} ({path})")
    preprocessing = entry.transforms()
    mean, std = tuple(float(v) for v in preprocessing.mean), tuple(float(v) for v in preprocessing.std)
    return model, {
        "checkpoint": str(path),
        "layout": f"torchvision {arch} {weights} ({layout})",
        "arch": arch,
        "contract": InputContract(mean=mean, std=std, source=f"torchvision {arch} {weights} transforms"),
        "mean": mean,
        "std": std,
    }

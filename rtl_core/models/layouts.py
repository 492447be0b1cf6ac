"""Layouts of the public encoders that are not torchvision ResNets, recognised by their key names, and the models
that load them strictly (:mod:`rtl_core.models.foreign` reads the file and handles the torchvision layouts).

* **TorchXRayVision** (Cohen et al. 2022): ``xrv.models.DenseNet`` — torchvision's DenseNet-121 key names
  (``features.conv0.weight``, ``features.denseblockB.denselayerL.…``, ``features.norm5``) with a 1-channel
  ``conv0``, a ``classifier`` and an ``op_threshs`` buffer (both dropped); built as ``timm:densenet121`` (same
  keys); ``xrv.models.ResNet`` — a torchvision
  ResNet-50 with a 1-channel ``conv1`` under ``model.`` (``model.fc`` and ``op_threshs`` dropped). Both take
  1-channel images scaled to ``[-1024, 1024]`` (``xrv.datasets.normalize``), no mean / std.
* **RadImageNet ResNet-50, PyTorch port** (Mei et al. 2022; the port of its Keras weights in
  github.com/Warvito/radimagenet-models, ``radimagenet_models/models/resnet.py``): torchvision's key names, but
  every convolution has a bias (``conv1.bias``, ``layerS.B.convK.bias``, ``downsample.0.bias``), the stride of a
  bottleneck sits on its first 1×1 convolution (Keras' ResNet50) and BatchNorm's epsilon is 1.001e-5. Built here
  as torchvision's ResNet-50 with those three changes, so every key loads strictly. Input: 3 channels; Keras'
  ``preprocess_input`` ("caffe": BGR, ImageNet means in 0–255 subtracted) after ``rescale=1/255`` as in
  RadImageNet's own fine-tuning code (``acl/acl_train.py``), i.e. ``[0, 1]`` images minus the means / 255.
* **ViTs** (DINOv2, RAD-DINO): timm's ``VisionTransformer`` keys (``patch_embed.proj.weight``, ``blocks.N.attn.qkv``,
  ``blocks.N.ls1.gamma``, …), or Hugging Face's ``Dinov2Model`` keys (``embeddings.patch_embeddings.projection``,
  ``encoder.layer.N.attention.attention.{query,key,value}``, ``layer_scale1.lambda1``, ``layernorm``), mapped onto
  timm's (query / key / value concatenated into ``qkv``). The model is timm's ``VisionTransformer`` built from
  the shapes in the file (width, depth, patch, grid, registers, layer scale; heads = width / 64 as in every
  DINOv2 size). Input: 3 channels, ``[0, 1]``, ImageNet mean / std (DINOv2's); RAD-DINO's processor uses its
  own mean / std, declared in ``evaluate.init_details``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from rtl_core.errors import CheckpointError
from rtl_core.models.contracts import InputContract

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: TorchXRayVision's input: ``xrv.datasets.normalize(img, 255)`` maps 8-bit images onto [-1024, 1024], one channel.
XRV_CONTRACT = InputContract(
    channels=1, value_range=(-1024.0, 1024.0), mean=(0.0,), std=(1.0,), source="TorchXRayVision layout"
)
#: Keras ``preprocess_input`` (caffe mode) after ``rescale=1/255``: ``x - mean_bgr / 255`` (RadImageNet's code).
RADIMAGENET_CONTRACT = InputContract(
    channels=3,
    value_range=(0.0, 1.0),
    mean=(103.939 / 255, 116.779 / 255, 123.68 / 255),
    std=(1.0, 1.0, 1.0),
    source="RadImageNet layout (Keras preprocess_input, caffe mode, BGR)",
)
DINOV2_CONTRACT = InputContract(mean=IMAGENET_MEAN, std=IMAGENET_STD, source="DINOv2 ViT layout (ImageNet mean/std)")
#: DenseNets by layers per block, as the ``pretrain.backbone`` that evaluates them (timm's DenseNet has
#: torchvision's key names, so one state dict fits both; timm's makes it a backbone of the pipeline).
DENSENET_BLOCKS = {(6, 12, 24, 16): "timm:densenet121"}
#: First key components outside the encoder that a layout drops on purpose (heads, projectors, momentum copies).
DROPPED_HEADS = (
    "fc",
    "head",
    "heads",
    "classifier",
    "projection_head",
    "prediction_head",
    "projector",
    "predictor",
    "backbone_momentum",
    "head_momentum",
    "projection_head_momentum",
    "momentum_backbone",
    "momentum_projection_head",
    "teacher",
    "teacher_backbone",
    "teacher_head",
    "student_head",
    "decoder",
    "segmentation_head",
    "criterion",
    "loss",
)
#: Keys of a whole classifier that are not encoder weights (TorchXRayVision's operating points).
DROPPED_BUFFERS = ("op_threshs",)


@dataclass
class Layout:
    """A recognised layout: its ``name`` (recorded as ``init_info.layout``), the architecture it builds
    (``arch``), the ``family`` that builds it, its default :class:`InputContract` and build ``options``."""

    name: str
    arch: str
    family: str  # resnet | radimagenet | densenet | vit
    contract: InputContract
    options: dict[str, Any] = field(default_factory=dict)


def split_prefix(
    state: dict[str, torch.Tensor], anchor: str, drop: tuple[str, ...], source: str
) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """The keys under the shortest prefix ending in ``anchor`` (outside :data:`DROPPED_HEADS`), the prefix, and
    what was dropped (first key components in ``drop`` under the prefix, heads and momentum copies outside it,
    ``op_threshs``). Any other key is a :class:`CheckpointError`."""
    prefixes = sorted({k[: -len(anchor)] for k in state if k.endswith(anchor)}, key=len)
    prefixes = [p for p in prefixes if not any(part in DROPPED_HEADS for part in p.split(".")[:-1])] or prefixes
    prefix = prefixes[0]
    encoder, dropped, unexpected = {}, set(), []
    for key, value in state.items():
        inner = key[len(prefix) :] if key.startswith(prefix) else None
        parts = key.split(".")
        head = next((i for i, part in enumerate(parts[:-1]) if part in DROPPED_HEADS), None)
        if parts[-1] in DROPPED_BUFFERS:
            dropped.add(key)
        elif head is not None and (inner is None or (prefix == "" and head == 0)):  # momentum / teacher, heads
            dropped.add(".".join(parts[: head + 1]))
        elif inner is not None and (inner in drop or inner.split(".")[0] in drop):
            dropped.add(prefix + (inner if inner in drop else inner.split(".")[0]))
        elif inner is not None:
            encoder[inner] = value
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointError(
            f"{source}: keys outside the encoder ({prefix or 'no prefix'!r}) that no rule drops: "
            f"{unexpected[:10]}{' …' if len(unexpected) > 10 else ''}. Remove them or save the encoder alone."
        )
    return encoder, prefix, sorted(dropped)


def _note(prefix: str, dropped: list[str]) -> str:
    parts = [f"encoder keys under {prefix!r}"] if prefix else []
    return "; ".join(parts + ([f"dropped: {', '.join(dropped)}"] if dropped else []))


# --------------------------------------------------------------------------------------------- DenseNet
def densenet_layout(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], Layout] | None:
    """TorchXRayVision's DenseNet-121 (1-channel) or torchvision's DenseNet-121 (3 channels); ``None`` if not one."""
    anchor = "features.denseblock1.denselayer1.conv1.weight"
    if not any(k.endswith(anchor) for k in state):
        return None
    encoder, prefix, dropped = split_prefix(state, anchor, ("classifier",), source)
    blocks = tuple(
        len({k.split(".")[2] for k in encoder if k.startswith(f"features.denseblock{b}.")}) for b in range(1, 5)
    )
    if blocks not in DENSENET_BLOCKS:
        raise CheckpointError(
            f"{source}: a DenseNet with {blocks} layers per block; supported: DenseNet-121 {list(DENSENET_BLOCKS)}."
        )
    channels = int(encoder["features.conv0.weight"].shape[1]) if "features.conv0.weight" in encoder else 3
    xrv = channels == 1
    name = "TorchXRayVision DenseNet-121 (1-channel)" if xrv else "torchvision DenseNet-121"
    note = _note(prefix, dropped)
    contract = XRV_CONTRACT if xrv else InputContract(source="torchvision DenseNet-121 layout")
    arch = DENSENET_BLOCKS[blocks]
    return encoder, Layout(name + (f"; {note}" if note else ""), arch, "densenet", contract, {"in_channels": channels})


def build_densenet(arch: str, in_channels: int) -> nn.Module:
    """The backbone ``arch`` (``timm:densenet121``: the same keys and forward as torchvision's and
    TorchXRayVision's DenseNet-121, pooled features after ``norm5`` + ReLU) with an ``in_channels`` stem."""
    from rtl_core.models.backbones import build_backbone

    return build_backbone(arch, in_channels=in_channels)


# --------------------------------------------------------------------------------------------- RadImageNet
def is_radimagenet(encoder: dict[str, torch.Tensor]) -> bool:
    """torchvision ResNet keys plus convolution biases: the RadImageNet port's ResNet-50."""
    return "conv1.bias" in encoder and "layer1.0.conv1.bias" in encoder


def build_radimagenet_resnet50() -> nn.Module:
    """torchvision's ResNet-50 changed into Keras' ResNet50 as the RadImageNet port defines it: biases on every
    convolution, the stride on each bottleneck's first 1×1 convolution, BatchNorm eps 1.001e-5; ``fc`` removed."""
    from torchvision.models.resnet import Bottleneck

    from rtl_core.models.backbones import build_backbone

    model = build_backbone("resnet50")

    def with_bias(conv: nn.Conv2d, stride: tuple[int, int] | None = None) -> nn.Conv2d:
        return nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=stride or conv.stride,
            padding=conv.padding,
            bias=True,
        )

    model.conv1 = with_bias(model.conv1)
    for module in model.modules():
        if isinstance(module, Bottleneck):
            stride = module.conv2.stride
            module.conv1 = with_bias(module.conv1, stride)
            module.conv2 = with_bias(module.conv2, (1, 1))
            module.conv3 = with_bias(module.conv3)
            if module.downsample is not None:
                module.downsample[0] = with_bias(module.downsample[0])
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 1.001e-5
    return model


# --------------------------------------------------------------------------------------------- ViT
_HF_BLOCK = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attention.output.dense": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
}
_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.register_tokens": "reg_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
#: Keys of a ViT file that are not the encoder: masked-image-modelling token, classifier / DINO heads, pooler.
VIT_DROP = ("mask_token", "embeddings.mask_token", "head", "classifier", "pooler", "dino_head", "ibot_head")


def hf_to_timm(encoder: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Hugging Face ``Dinov2Model`` keys → timm ``VisionTransformer`` keys (query, key, value → ``qkv``).
    A key with no rule (e.g. SwiGLU's ``mlp.weights_in`` of ViT-g) is a :class:`CheckpointError`."""
    out, unknown = {}, []
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in encoder.items():
        if key in _HF_TOP:
            out[_HF_TOP[key]] = value
            continue
        match = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)", key)
        if match is None:
            unknown.append(key)
            continue
        block, inner, kind = int(match.group(1)), match.group(2), match.group(3)
        part = re.fullmatch(r"attention\.attention\.(query|key|value)", inner)
        if part:
            qkv.setdefault((block, kind), {})[part.group(1)] = value
        elif f"{inner}.{kind}" in _HF_BLOCK:
            out[f"blocks.{block}.{_HF_BLOCK[f'{inner}.{kind}']}"] = value
        elif inner in _HF_BLOCK:
            out[f"blocks.{block}.{_HF_BLOCK[inner]}.{kind}"] = value
        else:
            unknown.append(key)
    for (block, kind), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            unknown.append(f"encoder.layer.{block}.attention.attention (has only {sorted(parts)} {kind})")
            continue
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], 0)
    if unknown:
        raise CheckpointError(
            f"{source}: Hugging Face ViT keys with no timm equivalent here: {unknown[:8]}"
            f"{' …' if len(unknown) > 8 else ''}. Supported: Dinov2Model (DINOv2, RAD-DINO) with an MLP block; "
            "convert others to timm keys (timm.models.vision_transformer) first."
        )
    return out


def vit_layout(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], Layout] | None:
    """A ViT in timm or Hugging Face keys (converted to timm's); ``None`` if the file holds no ViT."""
    hf_anchor, timm_anchor = "embeddings.patch_embeddings.projection.weight", "patch_embed.proj.weight"
    if any(k.endswith(hf_anchor) for k in state):
        encoder, prefix, dropped = split_prefix(state, hf_anchor, VIT_DROP, source)
        encoder, kind = hf_to_timm(encoder, source), "Hugging Face Dinov2Model keys"
    elif any(k.endswith(timm_anchor) for k in state):
        encoder, prefix, dropped = split_prefix(state, timm_anchor, VIT_DROP, source)
        kind = "timm VisionTransformer keys"
    else:
        return None
    options = vit_options(encoder, source)
    note = _note(prefix, dropped)
    name = f"ViT ({kind}; width {options['embed_dim']}, depth {options['depth']}, patch {options['patch_size']})"
    return encoder, Layout(name + (f"; {note}" if note else ""), vit_arch(options), "vit", DINOV2_CONTRACT, options)


def vit_options(encoder: dict[str, torch.Tensor], source: str) -> dict[str, Any]:
    """timm ``VisionTransformer`` arguments read off the shapes of a timm-keyed ViT state dict."""
    proj = encoder["patch_embed.proj.weight"]
    width, in_chans, patch = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[2])
    depth = len({int(k.split(".")[1]) for k in encoder if k.startswith("blocks.")})
    registers = int(encoder["reg_token"].shape[1]) if "reg_token" in encoder else 0
    tokens = int(encoder["pos_embed"].shape[1]) if "pos_embed" in encoder else 0
    prefix = (
        1 if "cls_token" in encoder else 0
    ) + registers  # timm: prefix tokens share pos_embed unless no_embed_class
    grid = math.isqrt(tokens - prefix) if tokens > prefix else 0
    no_embed_class = False
    if grid * grid != tokens - prefix:
        grid, no_embed_class = math.isqrt(tokens), True
        if grid * grid != tokens:
            raise CheckpointError(
                f"{source}: pos_embed holds {tokens} tokens, not a square grid (+ {prefix} class / register tokens)."
            )
    if width % 64:
        raise CheckpointError(f"{source}: ViT width {width} is not a multiple of 64 (DINOv2's head width).")
    fc1 = encoder.get("blocks.0.mlp.fc1.weight")
    return {
        "img_size": grid * patch,
        "patch_size": patch,
        "in_chans": in_chans,
        "embed_dim": width,
        "depth": depth,
        "num_heads": width // 64,
        "mlp_ratio": (int(fc1.shape[0]) / width) if fc1 is not None else 4.0,
        "qkv_bias": "blocks.0.attn.qkv.bias" in encoder,
        "init_values": 1e-5 if "blocks.0.ls1.gamma" in encoder else None,
        "class_token": "cls_token" in encoder,
        "reg_tokens": registers,
        "no_embed_class": no_embed_class,
        "global_pool": "avg" if "fc_norm.weight" in encoder else "token",
        "fc_norm": "fc_norm.weight" in encoder,
    }


def vit_arch(options: dict[str, Any]) -> str:
    """timm's name of the DINOv2 model these options build (``timm:vit_small_patch14_dinov2``), else a
    description of a non-standard size."""
    sizes = {(384, 12): "small", (768, 12): "base", (1024, 24): "large", (1536, 40): "giant"}
    size = sizes.get((options["embed_dim"], options["depth"]))
    if size is None:
        return f"vit(width={options['embed_dim']},depth={options['depth']},patch={options['patch_size']})"
    registers = f"_reg{options['reg_tokens']}" if options["reg_tokens"] else ""
    return f"timm:vit_{size}_patch{options['patch_size']}{registers}_dinov2"


def build_vit(options: dict[str, Any]) -> nn.Module:
    """timm's ``VisionTransformer`` with ``options`` and no head (``forward`` gives pooled features);
    ``dynamic_img_size`` so that a task's image size interpolates the position embedding (timm's own rule)."""
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(num_classes=0, dynamic_img_size=True, **options)

"""Collect layer activations with forward hooks, for CKA (Kornblith et al., ICML 2019).

Layers are named as in ``model.named_modules()`` (torchvision names: ``conv1``, ``layer1``,
``layer2.1.conv2``, ``avgpool``...). Each recorded output becomes a 2-D ``(batch, features)`` tensor:

* ``pool="avg"`` (default): global average pooling over the spatial axes of a conv map
  (``(N, C, H, W) -> (N, C)``). Common for large maps; it keeps the feature dimension at the channel
  count, so exact streaming linear CKA stays cheap.
* ``pool="flatten"``: flatten every axis but the batch (``(N, C*H*W)``), as Kornblith et al. do.
  Faithful to the paper's definition but high dimensional; CKA then usually takes the minibatch path.

A vision transformer (a model with timm's ``num_prefix_tokens``, e.g. ``timm:vit_small_patch16_224``) is read
explicitly: a ``(N, T, D)`` block output is a token sequence, pooled to ``(N, D)`` by ``tokens="cls"`` (the class
token, which the ViT's head reads) or ``tokens="mean"`` (the mean of the patch tokens); never averaged over its
feature axis as a 1-D conv map would be. A channels-last ``(N, H, W, D)`` output of such a model (timm's
``patch_embed`` with ``dynamic_img_size``) is refused, naming ``patch_embed.proj`` (its conv) to hook instead.

Example::

    with ActivationRecorder(model, ["layer1", "layer4"], pool="avg") as rec:
        model(images)
    rec.outputs["layer4"].shape  # (N, 512)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from rtl_core.errors import ConfigError, DataError

Pool = Literal["avg", "flatten"]
POOLINGS: tuple[str, ...] = ("avg", "flatten")
Tokens = Literal["cls", "mean"]
TOKEN_POOLINGS: tuple[str, ...] = ("cls", "mean")


def prefix_tokens(model: nn.Module) -> int | None:
    """The class (and register) tokens before the patch tokens of a timm ViT; ``None`` for a model without tokens."""
    found = getattr(model, "num_prefix_tokens", None)
    return int(found) if found is not None else None


def pool_tokens(t: torch.Tensor, prefix: int, tokens: Tokens = "cls") -> torch.Tensor:
    """``(N, T, D) -> (N, D)``: the class token (``cls``) or the mean of the ``T - prefix`` patch tokens."""
    if tokens not in TOKEN_POOLINGS:
        raise ConfigError(f"tokens={tokens!r} is not known; use one of {TOKEN_POOLINGS}.")
    if tokens == "cls":
        if prefix < 1:
            raise ConfigError("tokens='cls': this ViT has no class token (num_prefix_tokens = 0); use tokens='mean'.")
        return t[:, 0]
    return t[:, prefix:].mean(dim=1)


def pool_activation(t: torch.Tensor, pool: Pool = "avg") -> torch.Tensor:
    """Turn one layer output into ``(batch, features)`` with the chosen pooling."""
    if pool not in POOLINGS:
        raise ConfigError(f"pool={pool!r} is not known; use one of {POOLINGS}.")
    if t.ndim < 2:
        raise DataError(f"A layer output of shape {tuple(t.shape)} has no batch and feature axes.")
    if pool == "avg" and t.ndim > 2:
        return t.mean(dim=tuple(range(2, t.ndim)))
    return t.flatten(1)


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise DataError(f"A hooked layer returned {type(output).__name__}, not a tensor; hook another layer.")


class ActivationRecorder:
    """Context manager that records the pooled outputs of named layers on every forward pass.

    ``outputs`` maps each layer name to the (detached) activations of the latest forward pass.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], pool: Pool = "avg", tokens: Tokens = "cls") -> None:
        if pool not in POOLINGS:
            raise ConfigError(f"pool={pool!r} is not known; use one of {POOLINGS}.")
        if tokens not in TOKEN_POOLINGS:
            raise ConfigError(f"tokens={tokens!r} is not known; use one of {TOKEN_POOLINGS}.")
        if not layers:
            raise ConfigError("layers is empty; name at least one module, e.g. 'layer1'.")
        names = dict(model.named_modules())
        missing = [name for name in layers if name not in names]
        if missing:
            known = [n for n in names if n and "." not in n]
            raise ConfigError(
                f"layers {missing} are not modules of {type(model).__name__}; top-level modules are {known}."
            )
        self.model = model
        self.layers = list(layers)
        self.pool: Pool = pool
        self.tokens: Tokens = tokens
        self.prefix = prefix_tokens(model)
        self.outputs: dict[str, torch.Tensor] = {}
        self._modules = {name: names[name] for name in self.layers}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str):
        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            self.outputs[name] = self._pooled(name, module, _first_tensor(output).detach())

        return hook

    def _pooled(self, name: str, module: nn.Module, t: torch.Tensor) -> torch.Tensor:
        """A conv map by ``pool``; a ViT's token sequence by ``tokens`` (module docs)."""
        if self.prefix is None or isinstance(module, nn.Conv2d) or t.ndim == 2:
            return pool_activation(t, self.pool)
        if t.ndim == 3:
            return pool_tokens(t, self.prefix, self.tokens)
        raise DataError(
            f"Layer {name!r} of {type(self.model).__name__} (a vision transformer) gives {tuple(t.shape)}, neither a "
            "token sequence (N, T, D) nor a conv map; hook its blocks ('blocks.<i>') or 'patch_embed.proj'."
        )

    def __enter__(self) -> ActivationRecorder:
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self._modules.items()]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def pop(self) -> dict[str, torch.Tensor]:
        """Return the activations of the latest forward pass and forget them."""
        missing = [n for n in self.layers if n not in self.outputs]
        if missing:
            raise DataError(f"layers {missing} did not run in the forward pass; pick layers the model uses.")
        out, self.outputs = self.outputs, {}
        return out


def batch_inputs(batch: Any) -> torch.Tensor:
    """The image tensor of a DataLoader batch: a tensor, the first item of a tuple/list, or ``batch['image']``."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, Mapping):
        for key in ("image", "images", "x", "input"):
            if isinstance(batch.get(key), torch.Tensor):
                return batch[key]
    raise DataError(
        f"Cannot find the image tensor in a batch of type {type(batch).__name__}; "
        "yield tensors, (images, labels) tuples or dicts with an 'image' key."
    )


def iter_paired_activations(
    model_a: nn.Module,
    model_b: nn.Module,
    batches: Iterable[Any],
    layers_a: Sequence[str],
    layers_b: Sequence[str],
    pool: Pool = "avg",
    device: torch.device | str = "cpu",
    paired_inputs: bool = False,
) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """Run both models on every batch (in eval mode, no grad) and yield their pooled activations.

    With ``paired_inputs`` each batch is ``(inputs_a, inputs_b)``: the same examples prepared for each model
    (e.g. each normalised with its own mean/std). When ``model_b is model_a`` with the same layers and one
    input, the model runs once per batch.
    """
    same = model_b is model_a and list(layers_a) == list(layers_b) and not paired_inputs
    with ActivationRecorder(model_a, layers_a, pool) as rec_a:
        if same:
            for batch in batches:
                with torch.inference_mode():
                    model_a(batch_inputs(batch).to(device, non_blocking=True))
                acts = rec_a.pop()
                yield acts, acts
            return
        with ActivationRecorder(model_b, layers_b, pool) as rec_b:
            for batch in batches:
                xa, xb = _paired(batch) if paired_inputs else (batch_inputs(batch),) * 2
                with torch.inference_mode():  # pop A before B runs: B may be the same module, hooked twice
                    model_a(xa.to(device, non_blocking=True))
                    acts_a = rec_a.pop()
                    model_b(xb.to(device, non_blocking=True))
                yield acts_a, rec_b.pop()


def _paired(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise DataError(
            f"paired_inputs=True needs batches of (inputs_a, inputs_b); got a {type(batch).__name__}. "
            "Zip two loaders over the same examples, or pass paired_inputs=False."
        )
    xa, xb = batch_inputs(batch[0]), batch_inputs(batch[1])
    if xa.shape[0] != xb.shape[0]:
        raise DataError(f"Paired inputs have {xa.shape[0]} and {xb.shape[0]} examples; they must be the same ones.")
    return xa, xb


def collect_activations(
    model: nn.Module,
    batches: Iterable[Any],
    layers: Sequence[str],
    pool: Pool = "avg",
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """All activations of ``layers`` over ``batches``, concatenated on the CPU (memory grows with N)."""
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    for acts, _ in iter_paired_activations(model, model, batches, layers, layers, pool, device):
        for name in layers:
            chunks[name].append(acts[name].cpu())
    if not chunks[layers[0]]:
        raise DataError("The data loader yielded no batches; check the dataset is not empty.")
    return {name: torch.cat(parts) for name, parts in chunks.items()}


class eval_mode:
    """Context manager: put modules in eval mode, then restore every submodule's training flag."""

    def __init__(self, *models: nn.Module) -> None:
        self.models = models
        self._flags: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> None:
        self._flags = [(sub, sub.training) for m in self.models for sub in m.modules()]
        for m in self.models:
            m.eval()

    def __exit__(self, *exc: object) -> None:
        for sub, flag in self._flags:
            sub.training = flag

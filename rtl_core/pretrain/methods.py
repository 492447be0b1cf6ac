"""SSL methods by name, each assembled from lightly's heads, losses and momentum utilities.

========  ==========================================================================================
simclr    SimCLR (Chen et al. 2020): SimCLR head, NT-Xent over in-batch negatives (the paper's method)
moco      MoCo v2 (Chen et al. 2020): MLP head, momentum key encoder, queue of negatives (NT-Xent, τ 0.2)
byol      BYOL (Grill et al. 2020): online projector + predictor, momentum target, negative cosine
vicreg    VICReg (Bardes et al. 2022): 3-layer expander, variance–invariance–covariance loss
dino      DINO (Caron et al. 2021): momentum teacher, centred and sharpened softmax targets
========  ==========================================================================================

A builder takes the backbone (a torchvision ResNet with ``fc = Identity``) and a :class:`MethodContext` and
returns an :class:`SSLMethod`, whose :meth:`~SSLMethod.loss` maps two augmented views to a scalar. Example::

    method = build_method("simclr", build_backbone("resnet18"), MethodContext(feature_dim=512))
    loss = method.loss(view0, view1)
    loss.backward()
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, VICRegLoss
from lightly.models.modules.heads import (
    BYOLPredictionHead,
    BYOLProjectionHead,
    DINOProjectionHead,
    MoCoProjectionHead,
    SimCLRProjectionHead,
    VICRegProjectionHead,
)
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import Tensor, nn

from rtl_core.errors import ConfigError
from rtl_core.names import add_method


@dataclass(frozen=True)
class MethodContext:
    """What a method builder may need besides the backbone."""

    feature_dim: int
    projection_dim: int = 128
    projection_head: str = "lightly"
    loss_group_size: int | None = None
    temperature: float = 0.5
    gather_distributed: bool = False
    batch_size: int = 256  # per device
    pool_size: int = 4096
    max_steps: int = 1000


class SSLMethod(nn.Module):
    """A backbone plus whatever a method trains with it; subclasses implement :meth:`loss`."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def loss(self, view0: Tensor, view1: Tensor, step: int = 0, epoch: int = 0) -> Tensor:
        raise NotImplementedError

    def before_step(self, step: int, max_steps: int) -> None:
        """Hook before the forward pass (momentum updates)."""

    def after_backward(self, epoch: int) -> None:
        """Hook after the backward pass (gradient surgery)."""

    def _both(self, encoder: nn.Module, head: nn.Module, view0: Tensor, view1: Tensor) -> tuple[Tensor, Tensor]:
        """Project both views in one forward pass (batch statistics over both views, as SimCLR's TPU code)."""
        z = head(encoder(torch.cat([view0, view1])))
        return tuple(z.float().chunk(2))  # losses in float32 under bf16 autocast


METHODS: dict[str, Callable[[nn.Module, MethodContext], SSLMethod]] = {}


def register_method(name: str):
    def wrap(builder: Callable[[nn.Module, MethodContext], SSLMethod]):
        if name in METHODS:
            raise ValueError(f"SSL method {name!r} registered twice")
        METHODS[name] = builder
        add_method(name)  # a config may name it (rtl_core.names.known_methods)
        return builder

    return wrap


def build_method(name: str, backbone: nn.Module, context: MethodContext) -> SSLMethod:
    if name not in METHODS:
        raise ConfigError(
            f"Unknown SSL method {name!r} (pretrain.methods / --method); choose one of {', '.join(METHODS)}."
        )
    return METHODS[name](backbone, context)


class _MomentumMixin:
    """A frozen momentum (EMA) copy of backbone and head, updated with a cosine schedule 0.996 → 1 (BYOL)."""

    def _make_momentum(self, start: float = 0.996, head_factory: Callable[[], nn.Module] | None = None) -> None:
        self.backbone_momentum = copy.deepcopy(self.backbone)
        if head_factory is None:
            self.head_momentum = copy.deepcopy(self.head)
        else:  # weight-normalised heads cannot be deep-copied: build a twin and copy the weights
            self.head_momentum = head_factory()
            self.head_momentum.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.head_momentum)
        self.momentum_start = start

    def before_step(self, step: int, max_steps: int) -> None:
        m = cosine_schedule(step, max_steps, self.momentum_start, 1.0)
        update_momentum(self.backbone, self.backbone_momentum, m=m)
        update_momentum(self.head, self.head_momentum, m=m)

    @torch.no_grad()
    def _momentum_both(self, view0: Tensor, view1: Tensor) -> tuple[Tensor, Tensor]:
        return self._both(self.backbone_momentum, self.head_momentum, view0, view1)


def jonske_projection_head(feature_dim: int, projection_dim: int) -> nn.Sequential:
    """Jonske et al.'s SimCLR projector: Linear–ReLU–Linear–Sigmoid–Linear, hidden width = feature width, no biases,
    no BatchNorm (their ``pkgs/SimCLR/simclr/simclr.py``)."""
    return nn.Sequential(
        nn.Linear(feature_dim, feature_dim, bias=False),
        nn.ReLU(),
        nn.Linear(feature_dim, feature_dim, bias=False),
        nn.Sigmoid(),
        nn.Linear(feature_dim, projection_dim, bias=False),
    )


class SimCLR(SSLMethod):
    """SimCLR: 2-layer projection head (hidden width = feature width), NT-Xent with temperature τ.

    ``gather_distributed=False`` keeps each device's negatives local, as Jonske et al.; ``True`` gathers the
    projections of all devices first (lightly's ``NTXentLoss(gather_distributed=True)``). ``loss_group_size``
    computes NT-Xent within consecutive groups of that many pairs and averages: the authors' 512 pairs per GPU
    (1022 negatives) on any number of devices. ``projection_head="jonske"`` is their head
    (:func:`jonske_projection_head`).
    """

    def __init__(self, backbone: nn.Module, ctx: MethodContext) -> None:
        super().__init__(backbone)
        if ctx.projection_head == "jonske":
            self.head = jonske_projection_head(ctx.feature_dim, ctx.projection_dim)
        else:
            self.head = SimCLRProjectionHead(ctx.feature_dim, ctx.feature_dim, ctx.projection_dim)
        self.criterion = NTXentLoss(temperature=ctx.temperature, gather_distributed=ctx.gather_distributed)
        self.group = ctx.loss_group_size
        if self.group is not None and ctx.batch_size % self.group:
            raise ConfigError(
                f"pretrain.loss_group_size={self.group} must divide the per-device batch "
                f"({ctx.batch_size}): choose a divisor, or None for one group per device."
            )

    def loss(self, view0: Tensor, view1: Tensor, step: int = 0, epoch: int = 0) -> Tensor:
        z0, z1 = self._both(self.backbone, self.head, view0, view1)
        if self.group is None or self.group >= len(z0):
            return self.criterion(z0, z1)
        losses = [self.criterion(a, b) for a, b in zip(z0.split(self.group), z1.split(self.group))]
        return torch.stack(losses).mean()


class MoCo(_MomentumMixin, SSLMethod):
    """MoCo v2: 2-layer MLP head (128-d), momentum key encoder, queue of past keys as negatives, τ = 0.2.

    The queue holds ``min(4096, pool_size // 2)`` keys so that a small pool does not meet itself in it.
    """

    def __init__(self, backbone: nn.Module, ctx: MethodContext) -> None:
        super().__init__(backbone)
        self.head = MoCoProjectionHead(ctx.feature_dim, ctx.feature_dim, 128)
        self._make_momentum()
        queue = max(ctx.batch_size, min(4096, ctx.pool_size // 2))
        self.criterion = NTXentLoss(
            temperature=0.2, memory_bank_size=(queue, 128), gather_distributed=ctx.gather_distributed
        )

    def loss(self, view0: Tensor, view1: Tensor, step: int = 0, epoch: int = 0) -> Tensor:
        query = self.head(self.backbone(view0)).float()
        with torch.no_grad():
            key = self.head_momentum(self.backbone_momentum(view1)).float()
        return self.criterion(query, key)


class BYOL(_MomentumMixin, SSLMethod):
    """BYOL: projector 4096 → 256 and predictor, momentum target, symmetric negative cosine similarity."""

    def __init__(self, backbone: nn.Module, ctx: MethodContext) -> None:
        super().__init__(backbone)
        self.head = BYOLProjectionHead(ctx.feature_dim, 4096, 256)
        self.predictor = BYOLPredictionHead(256, 4096, 256)
        self._make_momentum()
        self.criterion = NegativeCosineSimilarity()

    def loss(self, view0: Tensor, view1: Tensor, step: int = 0, epoch: int = 0) -> Tensor:
        z = self.head(self.backbone(torch.cat([view0, view1])))
        p0, p1 = self.predictor(z).float().chunk(2)
        t0, t1 = self._momentum_both(view0, view1)
        return 0.5 * (self.criterion(p0, t1) + self.criterion(p1, t0))


class VICReg(SSLMethod):
    """VICReg: 3-layer expander (2048-d, as lightly's ResNet-18 example), variance–invariance–covariance loss."""

    def __init__(self, backbone: nn.Module, ctx: MethodContext) -> None:
        super().__init__(backbone)
        self.head = VICRegProjectionHead(ctx.feature_dim, 2048, 2048, num_layers=3)
        self.criterion = VICRegLoss(gather_distributed=ctx.gather_distributed)

    def loss(self, view0: Tensor, view1: Tensor, step: int = 0, epoch: int = 0) -> Tensor:
        z0, z1 = self._both(self.backbone, self.head, view0, view1)
        return self.criterion(z0, z1)


class DINO(_MomentumMixin, SSLMethod):
    """DINO with two global views: BN projection head (2048 prototypes), momentum teacher, centring."""

    def __init__(self, backbone: nn.Module, ctx: MethodContext) -> None:
        super().__init__(backbone)

        def head() -> nn.Module:
            return DINOProjectionHead(ctx.feature_dim, 512, 64, 2048, batch_norm=True, freeze_last_layer=1)

        self.head = head()
        self._make_momentum(head_factory=head)
        self.criterion = DINOLoss(output_dim=2048, warmup_teacher_temp_epochs=5)

    def loss(self, view0: Tensor, view1: Tensor, step: int = 0, epoch: int = 0) -> Tensor:
        s0, s1 = self._both(self.backbone, self.head, view0, view1)
        t0, t1 = self._momentum_both(view0, view1)
        return self.criterion([t0, t1], [s0, s1], epoch=epoch)

    def after_backward(self, epoch: int) -> None:
        self.head.cancel_last_layer_gradients(current_epoch=epoch)


register_method("simclr")(SimCLR)
register_method("moco")(MoCo)
register_method("byol")(BYOL)
register_method("vicreg")(VICReg)
register_method("dino")(DINO)

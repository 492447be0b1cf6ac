"""rtl_core.pretrain: self-supervised pretraining of ResNet encoders (SimCLR and friends, via lightly).

``pretrain(config, pool, method, sequential=False) -> Path`` trains (or reuses) an encoder; methods are
registered by name in :data:`rtl_core.pretrain.methods.METHODS`; :func:`knn_accuracy` checks features.
"""

from rtl_core.pretrain.knn import knn_accuracy
from rtl_core.pretrain.methods import METHODS, build_method, register_method
from rtl_core.pretrain.train import pretrain

__all__ = ["METHODS", "build_method", "knn_accuracy", "pretrain", "register_method"]

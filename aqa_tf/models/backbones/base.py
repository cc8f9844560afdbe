"""What every backbone shares: the `Backbone` base class, the registry entry points, width
scaling and the PyTorch BatchNorm constants of the mirrored networks.

A backbone is a serializable `keras.Model` taking one clip `[batch, clip_length, H, W, 3]` and
returning `[batch, feature_dim]` (MSCADC: a feature map); `feature_dim` is a public attribute.
Backbones are built by name (`--backbone=c3d`) through `registry.BACKBONES`.
"""

from typing import Any, Callable, Iterable, List

import keras
from keras import layers

from aqa_tf.registry import BACKBONES

# PyTorch BatchNorm3d defaults (the networks whose published weights we import); Keras momentum
# is 1 - PyTorch momentum.
TORCH_BN_EPSILON, TORCH_BN_MOMENTUM = 1e-5, 0.9


def torch_batch_norm(name: str) -> layers.BatchNormalization:
    """A BatchNormalization layer with PyTorch's defaults (epsilon 1e-5, momentum 0.1)."""
    return layers.BatchNormalization(epsilon=TORCH_BN_EPSILON, momentum=TORCH_BN_MOMENTUM,
                                     name=name)


def scaled_width(filters: int, width_multiplier: float) -> int:
    """`filters` scaled by `width_multiplier` (at least 1): the published network at 1.0,
    narrower networks of the same topology for tests and CPU quick starts below."""
    return max(1, int(round(filters * width_multiplier)))


def register_backbone(name: str) -> Callable:
    """Decorator: makes a backbone class (or builder function) buildable as
    `build_backbone(name, ...)`."""
    return BACKBONES.register(name)


def known_backbones() -> List[str]:
    return BACKBONES.names()


def build_backbone(backbone: str, **kwargs: Any) -> keras.Model:
    """Builds the backbone registered as `backbone` with constructor arguments `kwargs`.

    Raises:
      ValueError: for an unknown name, listing the known backbones.
    """
    return BACKBONES.get(backbone)(**kwargs)


def register_depths(family: str, cls: type, depths: Iterable[int]):
    """Registers `<family>_<depth>` for every depth, building `cls(depth=depth, ...)`."""
    for depth in depths:
        def build(depth=depth, **kwargs):
            return cls(depth=depth, **kwargs)
        build.__name__ = f"{family}_{depth}"
        BACKBONES.register(f"{family}_{depth}", build)


class Backbone(keras.Model):
    """Base of the functional backbones: their configuration is their constructor arguments.

    A subclass builds its graph, calls `super().__init__(inputs=..., outputs=..., **kwargs)`,
    then `self.record_config(features, arg=value, ...)` with every constructor argument; each
    becomes an attribute, `get_config` returns them (plus name and trainable) and `from_config`
    rebuilds the backbone from them. `feature_dim` is the size of the last output axis.

    Backbones whose feature pools a spatio-temporal map name the layers that pool it in
    `map_pooling` (in order; the map is the first one's input): heads that read the map of
    every clip (TSA's step decoder) need it (`feature_map_model`).
    """

    #: names of the layers that pool the clip's feature map into its feature, in order
    map_pooling: tuple = ()

    def feature_map_model(self) -> keras.Model:
        """A model of the same layers (shared weights) from the clip to its feature map
        `[batch, T', H', W', C]` before `map_pooling`."""
        if not self.map_pooling:
            raise ValueError(f"backbone {self.name} gives no feature map before its pooling")
        return keras.Model(self.input, self.get_layer(self.map_pooling[0]).input,
                           name=self.name)

    def pool_feature_map(self, feature_map):
        """The clip feature of a map of `feature_map_model` (the backbone's own pooling)."""
        for name in self.map_pooling:
            feature_map = self.get_layer(name)(feature_map)
        return feature_map

    def record_config(self, features: keras.KerasTensor, **arguments: Any):
        self._constructor_arguments = dict(arguments)
        for key, value in arguments.items():
            setattr(self, key, value)
        self.feature_dim = int(features.shape[-1])

    def get_config(self) -> dict:
        return {**self._constructor_arguments, "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict) -> "Backbone":
        return cls(**config)

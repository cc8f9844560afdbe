"""Backbone registry: backbones are built by name (`--backbone=c3d`).

A backbone is a serializable `keras.Model` taking one clip `[batch, clip_length, H, W, 3]` and
returning `[batch, feature_dim]`; `feature_dim` is a public attribute.
"""

from typing import Callable, Dict

import keras

_BACKBONES: Dict[str, Callable] = {}


def register_backbone(name: str):
    """Class decorator: makes the backbone class buildable as `build_backbone(name, ...)`."""

    def decorator(cls):
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered ({_BACKBONES[name]})")
        _BACKBONES[name] = cls
        return cls

    return decorator


def known_backbones():
    return sorted(_BACKBONES)


def get_backbone_class(name: str):
    # Importing the package registers every built-in backbone.
    import aqa_tf.models.backbones  # noqa: F401
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(known_backbones())}")
    return _BACKBONES[name]


def build_backbone(backbone: str, **kwargs):
    """Builds the backbone registered as `backbone` with constructor arguments `kwargs`."""
    return get_backbone_class(backbone)(**kwargs)


class Backbone(keras.Model):
    """Base of the functional backbones: their configuration is their constructor arguments.

    A subclass builds its graph, calls `super().__init__(inputs=..., outputs=..., **kwargs)`,
    then `self.record_config(features, arg=value, ...)` with every constructor argument; each
    becomes an attribute, `get_config` returns them (plus name and trainable) and `from_config`
    rebuilds the backbone from them. `feature_dim` is the size of the last output axis.
    """

    def record_config(self, features, **arguments):
        self._constructor_arguments = dict(arguments)
        for key, value in arguments.items():
            setattr(self, key, value)
        self.feature_dim = int(features.shape[-1])

    def get_config(self):
        return {**self._constructor_arguments, "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

"""The optimizer (Adam, paper 001; two learning rates, paper 002) and model compilation."""

from typing import Iterable

import keras

from aqa_tf.config import ModelConfig, TrainConfig


@keras.saving.register_keras_serializable(package="aqa_tf")
class TwoRateAdam(keras.optimizers.Adam):
    """Adam with a separate learning rate for the backbone's variables (paper 002 trains the
    pretrained backbone and the new layers at different rates).

    `learning_rate` drives the new layers; backbone variables (registered with
    `set_backbone_variables`) step with `learning_rate * backbone_lr_multiplier`.
    """

    def __init__(self, backbone_lr_multiplier: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.backbone_lr_multiplier = float(backbone_lr_multiplier)
        self._backbone_ids = frozenset()

    def set_backbone_variables(self, variables: Iterable):
        self._backbone_ids = frozenset(id(v) for v in variables)

    def update_step(self, gradient, variable, learning_rate):
        if id(variable) in self._backbone_ids and self.backbone_lr_multiplier != 1.0:
            learning_rate = learning_rate * self.backbone_lr_multiplier
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        return {**super().get_config(), "backbone_lr_multiplier": self.backbone_lr_multiplier}


def make_optimizer(train_config: TrainConfig, backbone: keras.Model,
                   steps_per_epoch: int = 1) -> keras.optimizers.Optimizer:
    """Adam (paper 001), with a separate backbone rate when `backbone_learning_rate` is set.

    The schedule counts optimizer steps, which the checkpoints keep: a resumed run continues
    the decay where it stopped.
    """
    learning_rate = train_config.learning_rate
    if train_config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            train_config.learning_rate, decay_steps=max(1, train_config.epochs * steps_per_epoch))
    elif train_config.lr_schedule == "step":
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            train_config.learning_rate, decay_steps=max(1, train_config.lr_decay_steps),
            decay_rate=train_config.lr_decay_factor, staircase=True)
    if train_config.backbone_learning_rate is None:
        return keras.optimizers.Adam(learning_rate)
    optimizer = TwoRateAdam(
        learning_rate=learning_rate,
        backbone_lr_multiplier=train_config.backbone_learning_rate / train_config.learning_rate)
    optimizer.set_backbone_variables(backbone.trainable_variables)
    return optimizer


def compile_model(model: keras.Model, model_config: ModelConfig, train_config: TrainConfig,
                  optimizer: keras.optimizers.Optimizer):
    """Compiles `model` (an `AQAModel`) with its heads' losses, weighted as `train_config`
    says (paper 001, eq. 4)."""
    losses, weights = model.loss_dicts(train_config)
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights,
                  jit_compile=uses_xla(train_config) and not train_config.run_eagerly,
                  run_eagerly=train_config.run_eagerly)


def uses_xla(train_config: TrainConfig) -> bool:
    """Whether the train and predict steps are XLA-compiled: always on JAX (XLA is JAX's
    compiler: without it every op runs on its own, eagerly); `--jit_compile` on TensorFlow."""
    return train_config.jit_compile or keras.backend.backend() == "jax"

"""The optimizer (learning-rate schedule, two rates) and the train config's validation."""

import keras
import numpy as np
import pytest

from aqa_tf.training import optim
from aqa_tf.config import TrainConfig


def test_cosine_schedule_decays_to_zero_over_all_steps():
    backbone = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    config = TrainConfig(model_dir="x", epochs=4, learning_rate=1e-3, lr_schedule="cosine")
    optimizer = optim.make_optimizer(config, backbone, steps_per_epoch=5)
    schedule = optimizer._learning_rate
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(10)) == pytest.approx(0.5e-3, rel=1e-5)
    assert float(schedule(20)) == pytest.approx(0.0, abs=1e-9)
    constant = optim.make_optimizer(TrainConfig(model_dir="x", learning_rate=1e-3), backbone)
    assert float(np.asarray(constant.learning_rate)) == pytest.approx(1e-3)


@pytest.mark.parametrize("field, value", [("select_on", "loss"), ("lr_schedule", "linear")])
def test_bad_train_config_names_the_value(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        TrainConfig(model_dir="x", **{field: value}).validate()


def test_step_schedule_halves_every_decay_steps():
    """Paper 003: Adam 1e-3 halved every 3K iterations (--lr_schedule=step)."""
    backbone = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    config = TrainConfig(model_dir="x", learning_rate=1e-3, lr_schedule="step",
                         lr_decay_steps=3000, lr_decay_factor=0.5)
    schedule = optim.make_optimizer(config, backbone)._learning_rate
    rates = [float(schedule(step)) for step in (0, 2999, 3000, 6000, 9001)]
    assert rates == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4, 1.25e-4])

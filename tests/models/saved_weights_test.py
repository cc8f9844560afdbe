"""Weights files written before a change still load and give the same numbers.

The fixtures under `tests/data/fixtures/` were written by the code of commit 208516f (see
`make_saved_weights.py` there): tiny models of each paper, their configurations and their
outputs on seeded inputs. Each test rebuilds the model from the configuration with today's code,
loads the weights file and compares every output, the per-clip contributions and the greedy
captions.
"""

import json
import os
import sys

import keras
import numpy as np
import pytest

from aqa_tf.config import DataConfig, ModelConfig
from aqa_tf.models import aqa_model

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                        "fixtures")
sys.path.insert(0, FIXTURES)
import make_saved_weights  # noqa: E402

NAMES = sorted(make_saved_weights.FIXTURES)


def _config(cls, fields):
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def _load(name):
    with open(os.path.join(FIXTURES, f"{name}.json")) as f:
        record = json.load(f)
    model_config = _config(ModelConfig, record["model_config"])
    data_config = _config(DataConfig, record["data_config"])
    model = aqa_model.build_aqa_model(model_config, data_config)
    model.load_weights(os.path.join(FIXTURES, f"{name}.weights.h5"))
    return record, model, model_config, data_config


@pytest.mark.parametrize("name", NAMES)
def test_weights_written_before_the_refactor_load_and_give_the_same_outputs(name):
    record, model, model_config, data_config = _load(name)
    assert model.count_params() == record["parameters"]
    x = make_saved_weights.inputs(model_config, data_config)
    outputs = model(x, training=False)
    assert sorted(outputs) == sorted(record["outputs"])
    for key, expected in record["outputs"].items():
        np.testing.assert_allclose(np.asarray(outputs[key]), np.asarray(expected),
                                   rtol=1e-4, atol=1e-5, err_msg=key)
    if "clip_contribution" in record:
        (kind, expected), = record["clip_contribution"].items()
        found = aqa_model.clip_contributions(aqa_model.inference_model(model))
        assert found is not None and found[0] == kind
        no_tokens = {k: v for k, v in x.items() if k != "caption_tokens"}
        np.testing.assert_allclose(np.asarray(found[1](no_tokens)), np.asarray(expected),
                                   rtol=1e-4, atol=1e-5)
    if "greedy_caption_ids" in record:
        generator = aqa_model.CaptionGenerator(model, data_config.max_caption_words)
        np.testing.assert_array_equal(np.asarray(generator(x["video"])),
                                      np.asarray(record["greedy_caption_ids"]))


def test_a_weights_file_of_another_model_does_not_load():
    """The check above means something: the same file does not fit a different model."""
    record, _, model_config, data_config = _load("c3d_avg_mtl_caption")
    other = aqa_model.build_aqa_model(
        _config(ModelConfig, {**record["model_config"], "fc_units": 16}), data_config)
    with pytest.raises(ValueError):
        other.load_weights(os.path.join(FIXTURES, "c3d_avg_mtl_caption.weights.h5"))
    keras.backend.clear_session()

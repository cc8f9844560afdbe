"""Initial weights of a training run (`--init_weights`, `--init_weights_source`): Keras weights of
the backbone or of the whole model, and the registry of checkpoint sources."""

import numpy as np
import pytest

from aqa_tf import registry
from aqa_tf.config import DataConfig, ModelConfig
from aqa_tf.models import aqa_model
from aqa_tf.weights import sources

DATA = DataConfig(sample_length=32, num_frames=32, clip_length=16, crop_size=32)
MODEL = ModelConfig(width_multiplier=0.0625, fc_units=8, heads=("score",))


def _same(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(a.get_weights(), b.get_weights()))


def test_keras_backbone_and_whole_model_weights(tmp_path):
    trained = aqa_model.build_aqa_model(MODEL, DATA)
    aqa_model.backbone_of(trained).save_weights(str(tmp_path / "backbone.weights.h5"))
    trained.save_weights(str(tmp_path / "model.weights.h5"))

    fresh = aqa_model.build_aqa_model(MODEL, DATA)
    assert not _same(fresh, trained)
    sources.load_initial_weights(fresh, str(tmp_path / "backbone.weights.h5"), "keras_backbone",
                                 "c3d")
    assert _same(aqa_model.backbone_of(fresh), aqa_model.backbone_of(trained))
    assert not _same(fresh.get_layer("score_regressor"), trained.get_layer("score_regressor"))
    sources.load_initial_weights(fresh, str(tmp_path / "model.weights.h5"), "keras_model", "c3d")
    assert _same(fresh, trained)


def test_unknown_source_and_missing_file_are_named(tmp_path):
    model = aqa_model.build_aqa_model(MODEL, DATA)
    with pytest.raises(ValueError, match="init_weights_source='caffe'.*known checkpoint sources"):
        sources.load_initial_weights(model, "x", "caffe", "c3d")
    with pytest.raises(FileNotFoundError, match="absent.weights.h5 does not exist"):
        sources.load_initial_weights(model, str(tmp_path / "absent.weights.h5"), "keras_model",
                                     "c3d")


def test_the_converter_offers_the_pytorch_sources():
    assert sources.torch_sources() == ["c3d", "core", "i3d", "i3d_hassony2", "mtl_aqa",
                                      "resnet", "s3d", "torchvision", "tsa"]
    assert set(registry.CHECKPOINT_SOURCES.names()) == set(sources.torch_sources()) | {
        "keras_backbone", "keras_model"}

"""A CoRe model end to end on synthetic records: it trains on pairs from the pipeline, and its
evaluation compares every test query with training exemplars of its match value (the bank),
whose mean verdict is the score."""

import numpy as np
import pytest

from aqa_tf.config import DataConfig, ModelConfig, TrainConfig


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from aqa_tf.data import synthetic
    folder = str(tmp_path_factory.mktemp("core_records"))
    synthetic.write_tfrecords(folder, synthetic.SyntheticDataConfig(
        num_train=24, num_test=8, num_frames=20, height=64, width=86), judges=True)
    return folder


def test_core_model_trains_on_pairs_and_votes_with_training_exemplars(records):
    import keras

    from aqa_tf.data import pipeline
    from aqa_tf.models import aqa_model
    from aqa_tf.models.heads import core
    from aqa_tf.training import evaluation, train_lib

    data = DataConfig(data_dir=records, train_split="train", test_split="test",
                      stored_height=64, stored_width=86, sample_length=16, num_frames=16,
                      clip_length=16, clip_stride=16, crop_size=56, batch_size=4,
                      val_fraction=0.0, temporal_jitter=1)
    model_config = ModelConfig(backbone="c3d", width_multiplier=0.0625,
                               backbone_batch_norm=True, fc_units=0, heads=("core",),
                               exemplar_match="any", core_difficulty=True, voters=3,
                               core_tree_depth=3, core_hidden=16)
    keras.utils.set_random_seed(0)
    model = aqa_model.build_aqa_model(model_config, data)
    head = model.heads["core"]
    # The groups come from the training split: 4 leaves, symmetric, outermost at +-30.
    assert head.groups.shape == (4, 2) and head.groups[0, 0] == -30 and head.groups[3, 1] == 30
    np.testing.assert_allclose(head.groups[:2], -head.groups[::-1][:2, ::-1])
    inference = model.inference_model()
    assert set(inference.input) == {"video", "difficulty", core.EXEMPLAR_FEATURES,
                                    core.EXEMPLAR_TARGETS}
    assert set(inference.output) == {"score", core.VOTER_SCORES}

    losses, weights = model.loss_dicts(TrainConfig())
    model.compile(keras.optimizers.Adam(1e-3), loss=losses, loss_weights=weights)
    train = train_lib.select_model_io(pipeline.build_dataset(
        data, "train", training=True, exemplar_pairs=("any", True)), model)
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(train, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert sum(not np.allclose(b, np.asarray(w))
               for b, w in zip(before, model.trainable_weights)) > len(before) // 2

    evaluator = evaluation.Evaluator(model, data, (0.0, 100.0))
    (bank,) = evaluator.predictor.extra_inputs
    predictions = evaluator.predict("test")
    assert len(predictions.keys) == 8
    votes = predictions.outputs[core.VOTER_SCORES]
    assert votes.shape == (8, 3)
    np.testing.assert_allclose(predictions.outputs["score"], votes.mean(-1), rtol=1e-5)
    # The voters are training samples, the same ones at every evaluation.
    train_keys = set(bank.index.keys)
    for key in predictions.keys:
        chosen = {bank.index.keys[i] for i in bank.voters_of(key, "")}
        assert len(chosen) == 3 and chosen <= train_keys and key not in chosen
    again = evaluator.predict("test")
    np.testing.assert_allclose(again.outputs[core.VOTER_SCORES], votes, rtol=1e-5)
    metrics = evaluator.evaluate("test")
    assert np.isfinite(metrics["spearman"])

"""A CoRe model end to end on synthetic records: it trains on pairs from the pipeline, its
evaluation compares every test query with training exemplars of its match value (the bank),
whose mean verdict is the score, and its export carries a bank that scores as the evaluation
does."""

import numpy as np
import pytest

from aqa_tf.config import ConfigError, DataConfig, ModelConfig, TrainConfig


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    from aqa_tf.data import synthetic
    folder = str(tmp_path_factory.mktemp("core_records"))
    synthetic.write_tfrecords(folder, synthetic.SyntheticDataConfig(
        num_train=24, num_test=8, num_frames=20, height=64, width=86), judges=True)
    return folder


def _data_config(records):
    return DataConfig(data_dir=records, train_split="train", test_split="test",
                      stored_height=64, stored_width=86, sample_length=16, num_frames=16,
                      clip_length=16, clip_stride=16, crop_size=56, batch_size=4,
                      val_fraction=0.0, temporal_jitter=1)


def _model(data, **options):
    import keras

    from aqa_tf.models import aqa_model
    keras.utils.set_random_seed(0)
    config = ModelConfig(backbone="c3d", width_multiplier=0.0625, backbone_batch_norm=True,
                         fc_units=0, heads=("core",), core_difficulty=True, core_tree_depth=3,
                         core_hidden=16, **options)
    return aqa_model.build_aqa_model(config, data)


def test_core_model_trains_on_pairs_and_votes_with_training_exemplars(records):
    import keras

    from aqa_tf.data import pipeline
    from aqa_tf.models.heads import core
    from aqa_tf.training import evaluation, train_lib

    data = _data_config(records)
    model = _model(data, exemplar_match="any", voters=3)
    groups = model.heads["core"].groups
    # Cut from the training split: 4 leaves, symmetric about 0, outermost at +-30.
    assert groups.shape == (4, 2) and groups[0, 0] == -30 and groups[3, 1] == 30
    np.testing.assert_allclose(groups[:2], -groups[::-1][:2, ::-1])
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
        chosen = {bank.index.keys[i] for i in bank.voters_of(key, "")}  # any type
        assert len(chosen) == 3 and chosen <= train_keys and key not in chosen
    again = evaluator.predict("test")
    np.testing.assert_allclose(again.outputs[core.VOTER_SCORES], votes, rtol=1e-5)
    assert np.isfinite(evaluator.evaluate("test")["spearman"])


def test_core_export_scores_with_its_bank_as_the_evaluation(records, tmp_path):
    """With as many voters as training samples, the evaluation and the export's bank both use
    every training sample of the query's dive type, or all of them for a type the training
    split lacks: each test window's exported score is within 0.05 points of the evaluation's.
    (Weights are untrained: the check is about the bank and the lookup.)"""
    from aqa_tf.data import pipeline
    from aqa_tf.models.heads import core
    from aqa_tf.serving import export_lib
    from aqa_tf.serving.scorer import Scorer
    from aqa_tf.training import evaluation

    data = _data_config(records)
    # Synthetic dive numbers are mostly unique, so the groups are given (4 leaves).
    model = _model(data, exemplar_match="dive_number", voters=24,
                   core_groups=(-30, -3, -3, 0, 0, 3, 3, 30))
    predictions = evaluation.Evaluator(model, data, (0.0, 100.0)).predict("test")
    evaluated = dict(zip(predictions.keys, predictions.outputs["score"]))

    path = export_lib.export_saved_model(model, data, str(tmp_path / "core" / "1"))
    scorer = Scorer.from_saved_model(path)
    assert scorer.meta["exemplar_match"] == "dive_number" and scorer.meta["voters"] == 24
    known = set(scorer.meta["exemplar_values"])
    windows = list(pipeline.serving_windows(data, "test").as_numpy_iterator())
    test_keys = {w["sample_key"].decode() for w in windows}
    found, gaps = 0, []
    for window in windows:
        dive = window["dive_number"].decode()
        out = scorer.score(np.asarray([window["frames"]], object), [window["difficulty"]],
                           dive_number=[dive.lower()])  # looked up in upper case
        key = window["sample_key"].decode()
        gaps.append(abs(float(out["score"][0]) - evaluated[key]))
        assert gaps[-1] <= 0.05, (key, out["score"])
        group = out[core.EXEMPLAR_ROW][0].decode()
        assert group == (dive.upper() if dive.upper() in known else "*")
        found += group != "*"
        used = [k.decode() for k in out[core.EXEMPLAR_KEYS][0] if k]
        assert used and not set(used) & test_keys
        votes = out[core.VOTER_SCORES][0][:len(used)]
        np.testing.assert_allclose(out["score"][0], votes.mean(), rtol=1e-5)
    print(f"export vs evaluation: largest gap {max(gaps):.2e} points; {found} of "
          f"{len(windows)} test dives have their type in the bank")
    # A type the bank holds: its exemplars are that type's training samples (all of them here).
    from aqa_tf.data import exemplars
    index = exemplars.read_index(data)
    for dive in sorted(known)[:3]:
        out = scorer.score(np.asarray([windows[0]["frames"]], object),
                           [windows[0]["difficulty"]], dive_number=[dive])
        assert out[core.EXEMPLAR_ROW][0].decode() == dive
        assert {k.decode() for k in out[core.EXEMPLAR_KEYS][0] if k} == {
            k for k, d in zip(index.keys, index.dive_numbers) if d.upper() == dive}
    with pytest.raises(ConfigError, match="--dive_type"):
        scorer.score(np.asarray([windows[0]["frames"]], object), [windows[0]["difficulty"]])


def test_groups_cut_from_the_data_are_pinned_into_the_run_flags(records, tmp_path):
    """`aqa_tf.train` writes the groups it cut from the training split into the run's
    flags.txt (`heads.pin_options`, `flag_defs.pin_flags`): a checkpoint is rebuilt with them
    even where the training records are gone."""
    import sys

    from absl import flags

    from aqa_tf import flag_defs
    from aqa_tf.data import exemplars
    from aqa_tf.models.heads import pin_options

    data = _data_config(records)
    config = ModelConfig(heads=("core",), fc_units=0, exemplar_match="any",
                         core_difficulty=True, core_tree_depth=3)
    pinned = pin_options(config, data)
    index = exemplars.read_index(data)
    expected = exemplars.group_boundaries(
        exemplars.pair_deltas(index.targets(True), index.groups("any")), 3, 30)
    np.testing.assert_allclose(np.reshape(pinned.core_groups, (-1, 2)), expected)
    assert pin_options(pinned, data) == pinned  # given groups stay as given

    flag_defs.define_flags()
    flags.FLAGS.unparse_flags()
    flags.FLAGS([sys.argv[0], "--heads=core", "--exemplar_match=any", "--core_tree_depth=3"])
    try:
        flag_defs.pin_flags({"core_groups": pinned.core_groups})
        path = flag_defs.write_flagfile(str(tmp_path / "flags.txt"))
        flags.FLAGS.unparse_flags()
        flags.FLAGS([sys.argv[0], f"--flagfile={path}"])
        assert flag_defs.model_config_from_flags().core_groups == pytest.approx(
            pinned.core_groups, rel=1e-6)
    finally:
        flags.FLAGS.unparse_flags()

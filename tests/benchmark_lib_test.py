"""`aqa_tf.benchmark` on the methods that compare a video with training exemplars (CoRe, TSA):
without records it cuts CoRe's tree groups from random score differences, gives inference the
bank's rows of `--voters` exemplars, and counts a training sample's FLOPs as its pair's.
(The command itself, timed on every backbone's speed: tests_jax/train_cli_test.py and
docs/benchmarks.md.)"""

import numpy as np
import pytest

from aqa_tf.config import DataConfig, ModelConfig


def _model(heads, **options):
    import keras
    data = DataConfig(stored_height=40, stored_width=54, sample_length=32, num_frames=32,
                      clip_length=16, clip_stride=16, crop_size=32, batch_size=2)
    config = ModelConfig(backbone="i3d", width_multiplier=0.125, fc_units=0, dropout=0.0,
                         heads=heads, voters=3, **options)
    return data, config, keras


@pytest.mark.parametrize("heads, options", [
    (("core",), {"core_tree_depth": 3, "core_hidden": 16, "core_difficulty": True}),
    (("tsa",), {"tsa_fix_size": 2, "tsa_heads": 2, "tsa_layers": 1})], ids=["core", "tsa"])
def test_exemplar_heads_get_bank_rows_groups_and_pair_flops(heads, options):
    from aqa_tf.models import aqa_model
    from aqa_tf.training import benchmark_lib
    data, config, keras = _model(heads, **options)
    config, note = benchmark_lib._groups_without_records(config, data)
    if "core" in heads:
        leaves = 2 ** (config.core_tree_depth - 1)
        groups = np.asarray(config.core_groups).reshape(-1, 2)
        assert groups.shape == (leaves, 2) and "random score differences" in note
        # Symmetric about 0, contiguous, as the tree's groups are.
        np.testing.assert_allclose(groups[::-1, ::-1], -groups)
        np.testing.assert_allclose(groups[1:, 0], groups[:-1, 1])
    else:
        assert note == "" and not config.core_groups
    keras.utils.set_random_seed(0)
    model = aqa_model.build_aqa_model(config, data)
    x, _ = model.synthetic_batch(np.random.default_rng(0), data.batch_size)
    bank = benchmark_lib.exemplar_inputs(model, x, config.voters, np.random.default_rng(1))
    inference = aqa_model.inference_model(model)
    # Exactly the inference inputs the batch lacks, `voters` exemplars per query.
    assert set(bank) == set(inference.input) - set(x) and bank
    for name, value in bank.items():
        assert value.shape[:2] == (data.batch_size, config.voters), (name, value.shape)
    outputs = inference({k: v for k, v in {**x, **bank}.items() if k in inference.input},
                        training=False)
    assert np.all(np.isfinite(np.asarray(outputs["score"])))
    # A training sample runs the backbone on its query and its exemplar: twice the video work
    # of an inference sample, whose exemplars come from the bank.
    forward = benchmark_lib.forward_flops(model, {**x, **bank})
    pair = benchmark_lib.forward_flops(model, x, training=True)
    print(heads, forward, pair)
    assert 1.8 * forward <= pair <= 2.4 * forward, (forward, pair)

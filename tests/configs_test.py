"""Every experiment config parses and trains one step on synthetic data (or, when a config
before it trained the same network, runs it forward: see the test).

The configs keep their topology (backbone, clip length, number of clips, aggregation, heads,
projection, caption cells/layers/attention); the test only shrinks the networks' width, the
crop and the caption length so that CPU can run them,
and points them at a small synthetic dataset with 110-frame videos (enough for 103-frame
windows; with the judges' awards, which MUSDL trains on, and the dives' steps, which TSA
trains on), the AQA-7 configs at synthetic AQA-7
records and the JIGSAWS configs at one synthetic JIGSAWS task's fold shards.
"""

import glob
import os
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.helpers import REPEATED_DEPTHS

CONFIGS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO_ROOT, "configs", "*.cfg"))
                 if not os.path.basename(p).startswith("base_"))


@pytest.fixture(scope="module")
def aqa7_videos(tmp_path_factory):
    from tests.conftest import aqa7_records
    return aqa7_records(tmp_path_factory.mktemp("aqa7"), 2, 1, num_frames=24, seed=5)


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    from aqa_tf.data import synthetic
    folder = str(tmp_path_factory.mktemp("long_videos"))
    synthetic.write_tfrecords(folder, synthetic.SyntheticDataConfig(
        num_train=4, num_test=2, num_frames=110, height=40, width=54, seed=5, steps=True),
        judges=True)
    return folder


@pytest.fixture(scope="module")
def jigsaws_task(tmp_path_factory):
    """One synthetic JIGSAWS task, 8 trials (2 per fold) of 64x48 videos converted to 16 frames
    of 54x40: the folder of its fold0..fold3 shards (the configs' 160-frame window repeats the
    first frame)."""
    from aqa_tf.data import synthetic
    from tfrecords_tools import jigsaws
    root = str(tmp_path_factory.mktemp("jigsaws"))
    raw, out = os.path.join(root, "raw"), os.path.join(root, "records")
    synthetic.write_jigsaws_tree(raw, 8, num_frames=12, height=48, width=64, seed=5,
                                 tasks=("Suturing",))
    jigsaws.convert(raw, os.path.join(raw, "splits.pkl"), out, tasks=("Suturing",),
                    num_frames=16, width=54, height=40, num_workers=1, progress=False)
    return os.path.join(out, "Suturing")


def test_every_paper_row_has_a_config():
    names = set(CONFIGS)
    for row in ("resnet3d_34", "r2plus1d_34", "resnet3d_50", "r2plus1d_50", "resnet3d_101",
                "r2plus1d_34_8f", "r2plus1d_34_32f"):
        for aggregation in ("avg", "wd"):
            assert f"paper002_{row}_{aggregation}.cfg" in names
    # Paper 001 Table 4: AQA, + Cls, + Caps, + Cls + Caps for C3D-AVG and MSCADC.
    assert {"mtl_aqa_c3d_avg_stl.cfg", "paper001_c3d_avg_cls.cfg", "paper001_c3d_avg_caps.cfg",
            "mtl_aqa_c3d_avg_mtl.cfg", "paper001_mscadc_stl.cfg", "paper001_mscadc_cls.cfg",
            "paper001_mscadc_caps.cfg", "paper001_mscadc_mtl.cfg"} <= names
    # Paper 000 Table 1 (baseline: mtl_aqa_c3d_avg_mtl.cfg) and section 4.3; paper 003.
    assert {"paper000_row1_c3d_lstm2_att.cfg", "paper000_row2_s3d_gru2.cfg",
            "paper000_row3_s3d_gru2_att.cfg", "paper000_row4_c3d_gru8_att.cfg",
            "paper000_row5_c3d_lstm8_att.cfg", "paper000_row6_c3d_gru2_att.cfg",
            "paper000_c3d_lstm_encoder_mtl.cfg", "paper003_c3d_lstm.cfg",
            "paper003_aqa7_c3d_lstm.cfg", "quickstart.cfg"} <= names


# (backbone, aggregation, heads) of the configs that trained a step in this process: the tests
# run in CONFIGS order in one worker (pytest.ini: --dist loadfile).
_TRAINED_TOPOLOGIES = set()


@pytest.mark.parametrize("config", CONFIGS)
def test_config_trains_one_step(config, long_videos, aqa7_videos, jigsaws_task, tmp_path):
    import keras
    from absl import flags
    from aqa_tf import flag_defs
    from aqa_tf.training import train_lib

    flag_defs.define_flags()
    FLAGS = flags.FLAGS
    FLAGS.unparse_flags()
    os.chdir(REPO_ROOT)  # configs include each other by repository-relative paths
    data_dir = (aqa7_videos if "aqa7" in config else jigsaws_task if "jigsaws" in config
                else long_videos)
    FLAGS([sys.argv[0], f"--flagfile=configs/{config}", f"--data_dir={data_dir}",
           f"--model_dir={tmp_path}", "--nosynthesize_if_missing", "--init_weights=",
           "--width_multiplier=0.0625", "--crop_size=32", "--batch_size=2", "--epochs=1",
           "--steps_per_epoch=1", "--val_fraction=0", "--mixed_precision=none",
           "--stored_height=40", "--stored_width=54"])
    if FLAGS.fc_units:
        FLAGS.fc_units = 16  # fc6 kept (4096 in the paper configs), narrower
    if "tsa" in FLAGS.heads:
        # The step decoder's width is the backbone's / 16: at 1/8 width, I3D's 128 features
        # give the 8 heads one dimension each (at 1/16, 4 dimensions cannot split into 8).
        FLAGS.width_multiplier = 0.125
    if "core" in FLAGS.heads or "tsa" in FLAGS.heads:
        # The tiny synthetic splits have no two training samples of one dive number or
        # difficulty to cut the tree's groups from: exemplars of any type (a data choice, the
        # network is the config's).
        FLAGS.exemplar_match = "any"
    if "caption" in FLAGS.heads:  # same cells, layers and attention, narrower, shorter
        FLAGS.caption_hidden, FLAGS.caption_embedding, FLAGS.max_caption_words = 16, 8, 12
    data_config = flag_defs.data_config_from_flags()
    model_config = flag_defs.model_config_from_flags()
    train_config = flag_defs.train_config_from_flags()
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    run = train_lib.TrainingRun(data_config, model_config, train_config)
    # One optimizer step, run eagerly: tracing a deep 3D ResNet's train step as a graph takes
    # about a minute on this CPU, and the graph path is covered by tests/train_test.py.
    run.model.run_eagerly = True
    inputs, targets = next(iter(run.train_data))
    topology = (model_config.backbone, model_config.aggregation, tuple(model_config.heads))
    if model_config.backbone in REPEATED_DEPTHS or topology in _TRAINED_TOPOLOGIES:
        # The same network as a config trained a step above (e.g. paper002's 32-frame row after
        # its 8-frame one), or a deeper depth of a backbone family made of the same blocks
        # (helpers.REPEATED_DEPTHS): built and run forward on a batch of its own data, about a
        # third of the eager training step's time (CI time).
        outputs = run.model(inputs, training=False)
        assert all(np.all(np.isfinite(np.asarray(v))) for v in keras.tree.flatten(outputs))
    else:
        _TRAINED_TOPOLOGIES.add(topology)
        before = [np.array(w) for w in run.model.trainable_weights]
        logs = run.model.train_on_batch(inputs, targets, return_dict=True)
        assert np.isfinite(logs["loss"]), logs
        changed = [not np.allclose(b, np.asarray(w))
                   for b, w in zip(before, run.model.trainable_weights)]
        assert sum(changed) > len(changed) // 2
    # The clips cover the window's frames, from its first to frame num_frames - 1.
    from aqa_tf.data import pipeline
    used = np.unique(pipeline.clip_indices(data_config).numpy())
    assert used[0] == 0 and used[-1] == int((data_config.num_frames - 1) * data_config.frame_step)
    FLAGS.unparse_flags()

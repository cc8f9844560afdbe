r"""Exports a SavedModel from weights alone (no training), in the TF Serving layout.

  python -m aqa_tf.export --flagfile configs/mtl_aqa_c3d_avg_mtl.cfg \
      --checkpoint weights/c3d_avg_mtl.weights.h5 --export_dir saved_models

writes `<export_dir>/<experiment_name or the checkpoint's name>/<export_version>/` with the same
signatures and `assets.extra/` as `aqa_tf.train` writes after training (`aqa_tf.export_lib`).
`--checkpoint_source` reads other checkpoint families, e.g. the MTL-AQA authors' PyTorch files
(`mtl_aqa`), converted on the fly.
"""

import os
import tempfile

from absl import flags

from aqa_tf import flag_defs
from aqa_tf import registry

flag_defs.define_flags()
flags.DEFINE_string("checkpoint", "", "Weights to export (see --checkpoint_source).")
flags.DEFINE_enum("checkpoint_source", "keras_model", registry.CHECKPOINT_SOURCES.names(),
                  "Family of --checkpoint: keras_model is a .weights.h5 of the whole model "
                  "(what training writes); the others are converted on the fly "
                  "(`aqa_tf.weights.convert`).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.checkpoint:
        raise flag_defs.ConfigError("--checkpoint is required")
    data_config = flag_defs.data_config_from_flags()
    model_config = flag_defs.model_config_from_flags()
    eval_config = flag_defs.eval_config_from_flags()
    export_config = flag_defs.export_config_from_flags()
    train_config = flag_defs.train_config_from_flags()
    from aqa_tf import devices, export_lib
    devices.configure_run(train_config.seed, "none")
    with tempfile.TemporaryDirectory() as folder:
        flags_path = flag_defs.write_flagfile(os.path.join(folder, "flags.txt"))
        path = export_lib.export_from_checkpoint(
            model_config, data_config, export_config, FLAGS.checkpoint, FLAGS.checkpoint_source,
            eval_config, flags_path)
    print(f"SavedModel: {path}", flush=True)


if __name__ == "__main__":
    flag_defs.run(main)

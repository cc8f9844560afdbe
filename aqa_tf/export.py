r"""Exports a SavedModel from weights alone (no training), in the TF Serving layout.

  python -m aqa_tf.export --flagfile configs/mtl_aqa_c3d_avg_mtl.cfg \
      --checkpoint weights/c3d_avg_mtl.weights.h5 --export_dir saved_models

writes `<export_dir>/<experiment_name or the checkpoint's name>/<export_version>/` with the same
signatures and `assets.extra/` as `aqa_tf.train` writes after training (`aqa_tf.export_lib`).
`--checkpoint_source` reads other checkpoint families, e.g. the MTL-AQA authors' PyTorch files
(`mtl_aqa`), converted on the fly.

  python -m aqa_tf.export --flagfile configs/quickstart.cfg \
      --checkpoint runs/quickstart/best.weights.h5 --format=tflite --quantize=none,float16

writes `<export_dir>/<name>/tflite/<name>_v<version>_<quantize>.tflite` for each quantisation
(`aqa_tf.tflite_lib`); `int8` calibrates on windows of the training records (`--data_dir`).
"""

import os
import sys
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
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite"],
                  "saved_model: the TF Serving SavedModel with every signature; tflite: LiteRT "
                  "flatbuffers of the score and sub-action model (see --quantize).")
flags.DEFINE_list("quantize", ["none"], "With --format=tflite, the variants to write, any of "
                  "none (float32), float16, dynamic_int8, int8 (calibrated on "
                  "--calibration_windows training windows).")
flags.DEFINE_integer("calibration_windows", 32, "Training windows that calibrate int8.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if not FLAGS.checkpoint:
        raise flag_defs.ConfigError("--checkpoint is required")
    from aqa_tf import evaluation
    # Multi-action models carry their actions' training deviations (read from --data_dir).
    data_config = evaluation.with_action_score_stds(flag_defs.data_config_from_flags())
    model_config = flag_defs.model_config_from_flags()
    eval_config = flag_defs.eval_config_from_flags()
    export_config = flag_defs.export_config_from_flags()
    train_config = flag_defs.train_config_from_flags()
    from aqa_tf import devices, export_lib
    devices.configure_run(train_config.seed, "none")
    if FLAGS.format == "tflite":
        export_tflite(model_config, data_config, export_config)
        return
    with tempfile.TemporaryDirectory() as folder:
        flags_path = flag_defs.write_flagfile(os.path.join(folder, "flags.txt"))
        path = export_lib.export_from_checkpoint(
            model_config, data_config, export_config, FLAGS.checkpoint, FLAGS.checkpoint_source,
            eval_config, flags_path)
    print(f"SavedModel: {path}", flush=True)


def export_tflite(model_config, data_config, export_config):
    from aqa_tf import tflite_lib
    from aqa_tf.weights import sources
    unknown = [q for q in FLAGS.quantize if q not in tflite_lib.QUANTIZATIONS]
    if unknown:
        raise flag_defs.ConfigError(f"--quantize: unknown {', '.join(unknown)}; choose from "
                                    f"{', '.join(tflite_lib.QUANTIZATIONS)}")
    model = sources.model_from_checkpoint(model_config, data_config, FLAGS.checkpoint,
                                          FLAGS.checkpoint_source)
    name = export_config.experiment_name or os.path.basename(FLAGS.checkpoint).split(".")[0]
    failed = []
    for quantize in FLAGS.quantize:
        representative = None
        if quantize == "int8":
            representative = tflite_lib.representative_windows(data_config, "train",
                                                               FLAGS.calibration_windows)
        path = tflite_lib.tflite_path(export_config.export_dir, name,
                                      export_config.export_version, quantize)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            blob = tflite_lib.convert(model, data_config, quantize, representative)
        except tflite_lib.ConversionError as error:  # the other variants are still written
            failed.append(quantize)
            print(f"TFLite ({quantize}): not converted: {error}", file=sys.stderr, flush=True)
            continue
        with open(path, "wb") as f:
            f.write(blob)
        print(f"TFLite ({quantize}): {path} ({len(blob) / 1e6:.2f} MB)", flush=True)
    if failed:
        raise flag_defs.ConfigError(f"TFLite conversion failed for {', '.join(failed)} (above)")


if __name__ == "__main__":
    flag_defs.run(main)

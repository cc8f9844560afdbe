r"""Exports a SavedModel from weights alone (no training), in the TF Serving layout.

  python -m aqa_tf.export --flagfile configs/mtl_aqa_c3d_avg_mtl.cfg \
      --checkpoint weights/c3d_avg_mtl.weights.h5 --export_dir saved_models

writes `<export_dir>/<experiment_name or the checkpoint's name>/<export_version>/` with the same
signatures and `assets.extra/` as `aqa_tf.train` writes after training
(`aqa_tf.serving.export_lib`). `--checkpoint_source` reads other checkpoint families, e.g. the
MTL-AQA authors' PyTorch files (`mtl_aqa`), converted on the fly.

  python -m aqa_tf.export --flagfile configs/quickstart.cfg \
      --checkpoint runs/quickstart/best.weights.h5 --format=tflite --quantize=none,float16

writes `<export_dir>/<name>/tflite/<name>_v<version>_<quantize>.tflite` for each quantisation
(`aqa_tf.serving.tflite_lib`); `int8` calibrates on windows of the training records
(`--data_dir`).
"""

import os
import sys
import tempfile

from aqa_tf import flag_defs
from aqa_tf.config import CheckpointOptions, ConfigError, ConversionOptions

# What this entry writes: the SavedModel or TFLite variants, not the Keras model.
FORMAT = dict(default="saved_model", choices=["saved_model", "tflite"])


def define_flags():
    """The training-run flags (they describe the model and the export), the checkpoint's and
    the format's."""
    flag_defs.define_flags()
    flag_defs.define_config_flags(CheckpointOptions)
    flag_defs.define_config_flags(ConversionOptions, overrides={"format": FORMAT})


def main(argv):
    del argv
    checkpoint = flag_defs.config_from_flags(CheckpointOptions)
    if not checkpoint.checkpoint:
        raise ConfigError("--checkpoint is required")
    conversion = flag_defs.config_from_flags(ConversionOptions)
    from aqa_tf.data import statistics
    # Multi-action models carry their actions' training deviations (read from --data_dir).
    data_config = statistics.with_action_statistics(flag_defs.data_config_from_flags())
    model_config = flag_defs.model_config_from_flags()
    eval_config = flag_defs.eval_config_from_flags()
    export_config = flag_defs.export_config_from_flags()
    train_config = flag_defs.train_config_from_flags()
    flag_defs.writable_folder(export_config.export_dir, "--export_dir")
    from aqa_tf import devices
    from aqa_tf.serving import export_lib
    devices.configure_run(train_config.seed, "none")
    if conversion.format == "tflite":
        export_tflite(model_config, data_config, export_config, checkpoint, conversion)
        return
    with tempfile.TemporaryDirectory() as folder:
        flags_path = flag_defs.write_flagfile(os.path.join(folder, "flags.txt"))
        path = export_lib.export_from_checkpoint(
            model_config, data_config, export_config, checkpoint.checkpoint,
            checkpoint.checkpoint_source, eval_config, flags_path)
    print(f"SavedModel: {path}", flush=True)


def export_tflite(model_config, data_config, export_config, checkpoint: CheckpointOptions,
                  conversion: ConversionOptions):
    """Writes each TFLite variant of `conversion.quantize`; ConfigError if any failed (after
    writing the others)."""
    from aqa_tf.serving import tflite_lib
    from aqa_tf.weights import sources
    model = sources.model_from_checkpoint(model_config, data_config, checkpoint.checkpoint,
                                          checkpoint.checkpoint_source)
    name = (export_config.experiment_name
            or os.path.basename(checkpoint.checkpoint).split(".")[0])
    failed = []
    for quantize in conversion.quantize:
        representative = None
        if quantize == "int8":
            representative = tflite_lib.representative_windows(data_config, "train",
                                                               conversion.calibration_windows)
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
        raise ConfigError(f"TFLite conversion failed for {', '.join(failed)} (above)")


if __name__ == "__main__":
    define_flags()
    flag_defs.run(main)

r"""Trains an AQA model from a flagfile, evaluates it every epoch and exports a SavedModel.

  python -m aqa_tf.train --flagfile configs/quickstart.cfg

Re-running the same command resumes from the last finished epoch (state in `<model_dir>/backup`).
"""

import os

from absl import app
from absl import flags

from aqa_tf import flag_defs

flag_defs.define_flags()
FLAGS = flags.FLAGS


def write_effective_flags(model_dir: str) -> str:
    """The project's flags (not absl's own, such as --helpfull) as a flagfile that
    `--flagfile=<model_dir>/flags.txt` reads back in any program that defines them."""
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, "flags.txt")
    lines = [flag.serialize() for flag in FLAGS.get_flags_for_module(flag_defs)]
    with open(path, "w") as f:
        f.write("\n".join(line for line in lines if line) + "\n")
    return path


def maybe_synthesize(data_dir: str):
    if not FLAGS.synthesize_if_missing:
        return
    from tfrecords_tools import synthesize
    generated = synthesize.ensure_dataset(
        data_dir, num_train=FLAGS.synthetic_num_train, num_test=FLAGS.synthetic_num_test,
        num_frames=FLAGS.synthetic_frames, height=FLAGS.synthetic_height,
        width=FLAGS.synthetic_width, seed=FLAGS.synthetic_seed)
    print(("Generated" if generated else "Using existing") +
          f" synthetic dataset in {data_dir}", flush=True)


def main(argv):
    del argv
    data_config = flag_defs.data_config_from_flags()
    model_config = flag_defs.model_config_from_flags()
    train_config = flag_defs.train_config_from_flags()

    # Devices must be configured before anything touches TensorFlow's runtime.
    from aqa_tf import training
    training.setup_devices(FLAGS.cpu_replicas)

    import keras
    from aqa_tf import reporting
    flags_path = write_effective_flags(train_config.model_dir)
    maybe_synthesize(data_config.data_dir)
    keras.utils.set_random_seed(train_config.seed)
    if train_config.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(train_config.mixed_precision)
    strategy = training.make_strategy(train_config.distribution)
    print(f"Strategy {type(strategy).__name__} with {strategy.num_replicas_in_sync} "
          f"replica(s); dtype policy {keras.mixed_precision.global_policy().name}", flush=True)

    run = training.TrainingRun(data_config, model_config, train_config, strategy)
    if FLAGS.evaluate_before_training:
        run.evaluate_untrained()
    run.fit(verbose=FLAGS.verbose)
    result = run.final_evaluation()
    name = FLAGS.experiment_name or os.path.basename(os.path.normpath(train_config.model_dir))
    export_path = os.path.join(FLAGS.export_dir, name, str(FLAGS.export_version))
    run.export(export_path, flags_path)
    print(reporting.format_report(result), flush=True)
    print(f"SavedModel: {export_path}\nRun folder: {train_config.model_dir}", flush=True)


if __name__ == "__main__":
    app.run(main)

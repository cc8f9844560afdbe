r"""Evaluates a checkpoint on a split and writes the metrics.

  python -m aqa_tf.evaluate --flagfile configs/quickstart.cfg --checkpoint runs/quickstart

`--checkpoint` is a `.weights.h5` file or a run folder (its `best.weights.h5` is used). The
evaluation is the one training ends with (`aqa_tf.training.evaluation.Evaluator.report`): a
metrics JSON, `<...>_predictions.csv`, `<...>_scatter.png` and, for caption models, their
caption metrics and `<...>_captions.csv` of (sample key, reference, generated), decoded with
`--caption_decoding` (greedy or beam). It runs in the precision the run trained in
(`--mixed_precision`; `auto` reads the choice recorded in the checkpoint's run folder,
`precision.evaluation_policy`), so that a run's final metrics come out again;
`--mixed_precision=none` evaluates in float32.
"""

import os

from aqa_tf import flag_defs
from aqa_tf.config import CheckpointOptions, ConfigError, EvaluateOptions, ScoringOptions


def define_flags():
    """The training-run flags (they describe the model), `--checkpoint`, `--split` and
    `--output_json`."""
    flag_defs.define_flags()
    flag_defs.define_config_flags(CheckpointOptions, only=["checkpoint"])
    flag_defs.define_config_flags(EvaluateOptions)
    flag_defs.define_config_flags(ScoringOptions, only=["output_json"])


def main(argv):
    del argv
    checkpoint_options = flag_defs.config_from_flags(CheckpointOptions)
    if not checkpoint_options.checkpoint:
        raise ConfigError("--checkpoint is required")
    split = flag_defs.config_from_flags(EvaluateOptions).split
    output_json = flag_defs.config_from_flags(ScoringOptions).output_json
    from aqa_tf import devices
    from aqa_tf.data import statistics
    from aqa_tf.training import evaluation
    from aqa_tf.training import precision
    from aqa_tf.metrics import report as reporting
    from aqa_tf.training import run_folder

    data_config = statistics.with_action_statistics(flag_defs.data_config_from_flags())
    model_config = flag_defs.model_config_from_flags()
    train_config = flag_defs.train_config_from_flags()
    checkpoint = run_folder.resolve_checkpoint(checkpoint_options.checkpoint)
    # The precision the run trained (and ended with its evaluation) in.
    devices.configure_run(train_config.seed, precision.evaluation_policy(
        train_config.mixed_precision, os.path.dirname(checkpoint)))
    from aqa_tf.weights import sources
    model = sources.model_from_checkpoint(model_config, data_config, checkpoint)
    evaluator = evaluation.Evaluator(model, data_config, statistics.score_range(data_config),
                                     flag_defs.eval_config_from_flags())
    output = output_json or checkpoint + f".{split}_metrics.json"
    result = evaluator.report(split, output, os.path.splitext(output)[0],
                              checkpoint_label=checkpoint,
                              checkpoint_description=f"checkpoint {checkpoint}",
                              checkpoint=checkpoint)
    print(reporting.format_report(result))
    print(f"Metrics written to {output}")


if __name__ == "__main__":
    define_flags()
    flag_defs.run(main)

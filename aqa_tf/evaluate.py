r"""Evaluates a checkpoint on a split and writes the metrics.

  python -m aqa_tf.evaluate --flagfile configs/quickstart.cfg --checkpoint runs/quickstart

`--checkpoint` is a `.weights.h5` file or a run folder (its `best.weights.h5` is used). The
evaluation is the one training ends with (`aqa_tf.evaluation.Evaluator.report`): a metrics JSON,
`<...>_predictions.csv`, `<...>_scatter.png` and, for caption models, their caption metrics and
`<...>_captions.csv` of (sample key, reference, generated), decoded with `--caption_decoding`
(greedy or beam). It runs in the precision the run trained in (`--mixed_precision`; `auto`
reads the choice recorded in the checkpoint's run folder, `precision.evaluation_policy`), so
that a run's final metrics come out again; `--mixed_precision=none` evaluates in float32.
"""

import os

from absl import flags

from aqa_tf import flag_defs

flag_defs.define_flags()
flags.DEFINE_string("checkpoint", None, "A .weights.h5 file, or a run folder (uses its "
                    "best.weights.h5).")
flags.DEFINE_enum("split", "test", ["test", "val"], "Split to evaluate.")
flags.DEFINE_string("output_json", "", "Where to write the metrics (default: next to the "
                    "checkpoint, <checkpoint>.<split>_metrics.json).")
flags.mark_flag_as_required("checkpoint")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from aqa_tf import devices, evaluation, precision, reporting, run_folder
    from aqa_tf.models import aqa_model

    data_config = evaluation.with_action_score_stds(flag_defs.data_config_from_flags())
    model_config = flag_defs.model_config_from_flags()
    train_config = flag_defs.train_config_from_flags()
    checkpoint = run_folder.resolve_checkpoint(FLAGS.checkpoint)
    # The precision the run trained (and ended with its evaluation) in.
    devices.configure_run(train_config.seed, precision.evaluation_policy(
        train_config.mixed_precision, os.path.dirname(checkpoint)))
    model = aqa_model.build_aqa_model(model_config, data_config)
    model.load_weights(checkpoint)
    evaluator = evaluation.Evaluator(model, data_config, evaluation.score_range(data_config),
                                     flag_defs.eval_config_from_flags())
    output = FLAGS.output_json or checkpoint + f".{FLAGS.split}_metrics.json"
    result = evaluator.report(FLAGS.split, output, os.path.splitext(output)[0],
                              checkpoint_label=checkpoint,
                              checkpoint_description=f"checkpoint {checkpoint}",
                              checkpoint=checkpoint)
    print(reporting.format_report(result))
    print(f"Metrics written to {output}")


if __name__ == "__main__":
    flag_defs.run(main)

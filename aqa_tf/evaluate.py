r"""Evaluates a checkpoint on a split and writes the metrics.

  python -m aqa_tf.evaluate --flagfile configs/quickstart.cfg --checkpoint runs/quickstart

`--checkpoint` is a `.weights.h5` file or a run folder (its `best.weights.h5` is used). Caption
models also get their caption metrics and a `<...>_captions.csv` of (sample key, reference,
generated), decoded with `--caption_decoding` (greedy or beam).
"""

import json
import os

from absl import app
from absl import flags

from aqa_tf import flag_defs

flag_defs.define_flags()
flags.DEFINE_string("checkpoint", None, "A .weights.h5 file, or a run folder (uses its "
                    "best.weights.h5).")
flags.DEFINE_enum("split", "test", ["test", "val"], "Split to evaluate.")
flags.DEFINE_string("output_json", "", "Where to write the metrics (default: next to the "
                    "checkpoint, <checkpoint>.<split>_metrics.json).")
FLAGS = flags.FLAGS


def resolve_checkpoint(path: str) -> str:
    if os.path.isdir(path):
        path = os.path.join(path, "best.weights.h5")
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path


def main(argv):
    del argv
    if not FLAGS.checkpoint:
        raise app.UsageError("--checkpoint is required")
    from aqa_tf import reporting, training
    from aqa_tf.data import features, pipeline
    from aqa_tf import metrics as metrics_lib
    from aqa_tf.models import aqa_model

    data_config = flag_defs.data_config_from_flags()
    model_config = flag_defs.model_config_from_flags()
    checkpoint = resolve_checkpoint(FLAGS.checkpoint)
    model = aqa_model.build_aqa_model(model_config, data_config)
    model.load_weights(checkpoint)
    train_scores = training.read_scores(data_config, data_config.train_split)
    score_range = (float(train_scores.min()), float(train_scores.max()))
    with_captions = aqa_model.has_caption_head(model)
    vocab, generator = None, None
    if with_captions:
        from aqa_tf.data import captions
        vocab = captions.Vocabulary.load(data_config.vocab_path)
        generator = aqa_model.CaptionGenerator(model, data_config.max_caption_words,
                                               FLAGS.caption_decoding, FLAGS.caption_beam_size)
    dataset = pipeline.build_dataset(data_config, FLAGS.split, training=False, with_keys=True,
                                     include_caption=with_captions)
    keys, targets, outputs = training.Predictor(model, caption_generator=generator)(dataset)
    metrics = training.evaluate_predictions(targets, outputs, score_range, keys, vocab)
    class_names = [n for n in features.CLASS_OUTPUTS if n in outputs]
    result = {"split": FLAGS.split, "checkpoint": checkpoint, "metrics": metrics,
              "checkpoint_description": f"checkpoint {checkpoint}",
              "majority_rates": {n: metrics_lib.majority_rate(targets[n]) for n in class_names}}
    output = FLAGS.output_json or checkpoint + f".{FLAGS.split}_metrics.json"
    with open(output, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    reporting.write_predictions(output[:-len(".json")] + "_predictions.csv", keys, targets,
                                outputs)
    if with_captions:
        from aqa_tf import caption_metrics
        caption_metrics.write_captions(output[:-len(".json")] + "_captions.csv", keys,
                                       *training.caption_texts(keys, targets, outputs, vocab))
    print(reporting.format_report(result))
    print(f"Metrics written to {output}")


if __name__ == "__main__":
    app.run(main)

r"""Scores video files with a trained model.

  python -m aqa_tf.predict dive.mp4 --model saved_models/quickstart/1
  python -m aqa_tf.predict broadcast.mp4 --model saved_models/quickstart/1 --scan
  python -m aqa_tf.predict dive.mp4 --flagfile configs/quickstart.cfg \
      --checkpoint runs/quickstart/best.weights.h5       # a model that was not exported

Any file PyAV reads, at any size and frame rate: frames are resampled to the frame rate the
model was trained at and resized to its stored size, as the converter does. By default the video
is one dive and the model's window ends at its last frame (`--end_time`/`--end_frame` choose
another end); `--scan` slides the window over a long video and writes a timeline (CSV, JSON,
PNG) of the score and the top sub-actions, to find the dives of a broadcast.
"""

import os

from absl import flags

from aqa_tf import flag_defs
from aqa_tf import registry

flag_defs.define_flags()
flag_defs.define_scoring_flags()
flags.DEFINE_string("model", "", "Exported model: a SavedModel folder (<export_dir>/<name>/"
                    "<version>) or a .tflite file (aqa_tf.export --format=tflite).")
flags.DEFINE_string("checkpoint", "", "Instead of --model: weights of the model the flags "
                    "(--flagfile) describe, e.g. <model_dir>/best.weights.h5.")
flags.DEFINE_enum("checkpoint_source", "keras_model", registry.CHECKPOINT_SOURCES.names(),
                  "Family of --checkpoint (see `aqa_tf.export`).")
flags.DEFINE_bool("scan", False, "Slide the window over the whole video and write a timeline "
                  "<output_dir>/<video>_timeline.{csv,json,png}.")
flags.DEFINE_integer("scan_stride", 0, "Frames (at the model's frame rate) between two scanned "
                     "windows; 0: the clip length.")
flags.DEFINE_integer("predict_batch_size", 8, "Windows scored at once while scanning.")
flags.DEFINE_string("output_dir", ".", "Folder of the PNG and timeline files.")
flags.DEFINE_bool("plot", False, "Write <output_dir>/<video>_clips.png: frames of each clip and "
                  "its contribution (Weight-Decider weights or per-clip scores).")
flags.DEFINE_bool("progress", True, "Progress bars while decoding and scanning.")
FLAGS = flags.FLAGS


def load_scorer():
    from aqa_tf import predict_lib
    if FLAGS.model:
        return predict_lib.Scorer.from_path(FLAGS.model)
    if not FLAGS.checkpoint:
        raise flag_defs.ConfigError("give --model (an exported model) or --flagfile and "
                                    "--checkpoint")
    from aqa_tf import devices, evaluation
    data_config = evaluation.with_action_score_stds(flag_defs.data_config_from_flags())
    model_config = flag_defs.model_config_from_flags()
    from aqa_tf.data import captions
    from aqa_tf.models import aqa_model
    from aqa_tf.weights import sources
    devices.configure_run(0, "none")
    model = sources.model_from_checkpoint(model_config, data_config, FLAGS.checkpoint,
                                          FLAGS.checkpoint_source)
    vocab = (captions.Vocabulary.load(data_config.vocab_path)
             if aqa_model.has_caption_head(model) else None)
    return predict_lib.Scorer.from_keras(model, data_config, vocab,
                                         flag_defs.eval_config_from_flags(),
                                         f"{FLAGS.checkpoint} ({FLAGS.checkpoint_source})")


def main(argv):
    videos = argv[1:]
    if not videos:
        raise flag_defs.ConfigError("no video given: python -m aqa_tf.predict VIDEO [VIDEO ...] "
                                    "--model saved_models/NAME/VERSION")
    if FLAGS.end_time is not None and FLAGS.end_frame is not None:
        raise flag_defs.ConfigError("give --end_time or --end_frame, not both")
    for path in videos:  # Before loading the model: a typo fails at once.
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
    from aqa_tf import predict_lib, reporting
    scorer = load_scorer()
    if scorer.meta.get("uses_difficulty") and FLAGS.difficulty is None:
        raise flag_defs.ConfigError("this model multiplies its prediction by the degree of "
                                    "difficulty: give --difficulty")
    action = flag_defs.scoring_action(scorer.meta)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    print(f"Model: {scorer.description}", flush=True)
    results = []
    for path in videos:
        out = predict_lib.OutputPaths(FLAGS.output_dir, path)
        video = predict_lib.read_video(scorer, path, FLAGS.progress)
        if FLAGS.scan:
            stride = FLAGS.scan_stride or int(scorer.meta["clip_length"])
            rows = predict_lib.scan(scorer, path, stride, FLAGS.predict_batch_size,
                                    FLAGS.difficulty, FLAGS.progress, video=video,
                                    action=action)
            files = reporting.write_timeline(rows, out.file("timeline"))
            files.append(reporting.plot_timeline(rows, out.file("timeline.png"),
                                                   os.path.basename(path)))
            best = max(rows, key=lambda r: r["score"])
            print(f"{path}: {len(rows)} windows; best {best['score']:.2f} points for the window "
                  f"{best['start_time']:.2f}-{best['end_time']:.2f} s\n  " + "\n  ".join(files),
                  flush=True)
            results.append({"video": path, "timeline": rows})
            continue
        result = predict_lib.score_dive(scorer, path, FLAGS.end_time, FLAGS.end_frame,
                                        FLAGS.difficulty, FLAGS.progress, video=video,
                                        action=action)
        print(reporting.format_result(result), flush=True)
        if FLAGS.plot:
            print(f"  {'plot':<16}" + reporting.plot_dive(result, scorer.meta,
                                                            out.file("clips.png")), flush=True)
        results.append(predict_lib.json_ready(result))
    predict_lib.write_results(FLAGS.output_json, results)


if __name__ == "__main__":
    flag_defs.run(main)

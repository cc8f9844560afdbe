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

from aqa_tf import flag_defs
from aqa_tf.config import CheckpointOptions, ConfigError, PredictOptions, ScoringOptions


def define_flags():
    """The training-run flags (a model given by `--checkpoint` is described by them), the
    options of the model (`--model` or `--checkpoint`), of the video window and of the
    output."""
    flag_defs.define_flags()
    for cls in (PredictOptions, CheckpointOptions, ScoringOptions):
        flag_defs.define_config_flags(cls)


def load_scorer(options: PredictOptions, checkpoint: CheckpointOptions):
    """The scorer of the exported model `options.model`, else of the weights
    `checkpoint.checkpoint` of the model the training-run flags describe."""
    from aqa_tf.serving import predict_lib
    if options.model:
        return predict_lib.open_scorer(options.model)
    if not checkpoint.checkpoint:
        raise ConfigError("give --model (an exported model) or --flagfile and --checkpoint")
    from aqa_tf import devices
    from aqa_tf.data import statistics
    data_config = statistics.with_action_statistics(flag_defs.data_config_from_flags())
    model_config = flag_defs.model_config_from_flags()
    from aqa_tf.weights import sources
    devices.configure_run(0, "none")
    model = sources.model_from_checkpoint(model_config, data_config, checkpoint.checkpoint,
                                          checkpoint.checkpoint_source)
    return predict_lib.Scorer.from_keras(
        model, data_config, None, flag_defs.eval_config_from_flags(),
        f"{checkpoint.checkpoint} ({checkpoint.checkpoint_source})")


def _scan(scorer, path: str, out, options: PredictOptions, scoring: ScoringOptions, action):
    """Scores every window of the video `path`, writes its timeline; returns its JSON entry."""
    from aqa_tf.serving import predict_lib
    from aqa_tf.metrics import report as reporting
    video = predict_lib.read_video(scorer, path, scoring.progress)
    stride = options.scan_stride or int(scorer.meta["clip_length"])
    rows = predict_lib.scan(scorer, path, stride, options.predict_batch_size,
                            scoring.difficulty, scoring.progress, video=video, action=action,
                            dive_type=scoring.dive_type)
    files = reporting.write_timeline(rows, out.file("timeline"))
    files.append(reporting.plot_timeline(rows, out.file("timeline.png"),
                                         os.path.basename(path)))
    best = max(rows, key=lambda r: r["score"])
    print(f"{path}: {len(rows)} windows; best {best['score']:.2f} points for the window "
          f"{best['start_time']:.2f}-{best['end_time']:.2f} s\n  " + "\n  ".join(files),
          flush=True)
    return {"video": path, "timeline": rows}


def main(argv):
    videos = flag_defs.video_arguments(
        argv, "python -m aqa_tf.predict VIDEO [VIDEO ...] "
              "--model saved_models/NAME/VERSION")
    scoring = flag_defs.config_from_flags(ScoringOptions)  # --end_time or --end_frame
    options = flag_defs.config_from_flags(PredictOptions)
    from aqa_tf.serving import predict_lib
    from aqa_tf.metrics import report as reporting
    scorer = load_scorer(options, flag_defs.config_from_flags(CheckpointOptions))
    if scorer.meta.get("exemplar_match") == "dive_number" and not scoring.dive_type:
        known = scorer.meta.get("exemplar_values", [])
        raise ConfigError("this model compares the dive with exemplars of its dive type: give "
                          f"--dive_type (e.g. {', '.join(known[:5]) or '407C'})")
    if scorer.meta.get("uses_difficulty") and scoring.difficulty is None:
        raise ConfigError("this model multiplies its prediction by the degree of difficulty: "
                          "give --difficulty")
    action = flag_defs.scoring_action(scorer.meta, scoring.action)
    results = predict_lib.Results(scoring.output_json)
    os.makedirs(options.output_dir, exist_ok=True)
    print(f"Model: {scorer.description}", flush=True)

    def score(path: str) -> dict:
        out = predict_lib.OutputPaths(options.output_dir, path)
        if options.scan:
            return _scan(scorer, path, out, options, scoring, action)
        video = predict_lib.read_video(scorer, path, scoring.progress)
        result = predict_lib.score_dive(scorer, path, scoring.end_time, scoring.end_frame,
                                        scoring.difficulty, scoring.progress, video=video,
                                        action=action, dive_type=scoring.dive_type)
        print(reporting.format_result(result), flush=True)
        if options.plot and "steps" in result:  # procedure-aware models: the steps
            print(f"  {'plot':<16}" + reporting.plot_steps(result, out.file("steps.png")),
                  flush=True)
        elif options.plot:
            print(f"  {'plot':<16}" + reporting.plot_dive(result, scorer.meta,
                                                            out.file("clips.png")), flush=True)
            if "exemplars" in result:
                print(f"  {'exemplars plot':<16}" + reporting.plot_exemplars(
                    result, out.file("exemplars.png")), flush=True)
            if "score_distribution" in result:
                print(f"  {'distribution':<16}" + reporting.plot_distribution(
                    result, scorer.meta, out.file("distribution.png")), flush=True)
        return predict_lib.json_ready(result)

    return results.score_each(videos, score)

if __name__ == "__main__":
    define_flags()
    flag_defs.run(main)

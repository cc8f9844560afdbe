r"""Scores video files with a model that TensorFlow Serving serves, over gRPC or REST.

  python -m aqa_tf.serving_client dive.mp4 --server localhost:8500 --model_name quickstart
  python -m aqa_tf.serving_client dive.mp4 --rest http://localhost:8501 --model_name quickstart

It does what `aqa_tf.predict` does with the model on a server: the video is decoded here
(`predict_lib.read_video`: the model's frame rate and stored size), the window is JPEG-encoded at
the quality the records were stored at and sent to the export's `serving_jpeg` signature (and
`caption_jpeg` for models with a commentary head), and the same table is printed. How to prepare
a video (`aqa_tf.json`: stored size, frame rate, window, class names) comes from the export's
`metadata` signature (one ignored int32 input `batch`, so that TF Serving's REST API and its
request batching can run it), over gRPC and REST alike; `--metadata FILE` reads it from a file
instead, e.g. for an export of an older aqa_tf whose `metadata` signature has no input, which
TF Serving's REST API cannot run, nor its gRPC API under `--enable_batching`
(deploy/tf_serving/README.md).

A refusal of the server, a server that cannot be reached or one that does not answer within
`--timeout` ends the program with one line `error: <server, model, signature>: <what happened>.
<what to do>` and exit status 2. The client itself is a library, `aqa_tf.serving.client`.
"""


from aqa_tf import flag_defs
from aqa_tf.config import ConfigError, ScoringOptions, ServingClientOptions
from aqa_tf.serving import client


def define_flags():
    """The server's and model's options, and those of the video window and the output."""
    flag_defs.define_config_flags(ServingClientOptions)
    flag_defs.define_config_flags(ScoringOptions)


def main(argv):
    videos = flag_defs.video_arguments(
        argv, "python -m aqa_tf.serving_client VIDEO [VIDEO ...] "
              "--server HOST:8500 (or --rest http://HOST:8501)")
    scoring = flag_defs.config_from_flags(ScoringOptions)  # --end_time or --end_frame
    options = flag_defs.config_from_flags(ServingClientOptions)
    connection = client.connect(options.server, options.rest, options.model_name,
                                options.model_version, options.timeout)
    from aqa_tf.serving import predict_lib
    from aqa_tf.metrics import report as reporting
    meta = client.read_metadata(options.metadata) if options.metadata else None
    scorer = client.serving_scorer(connection, meta)
    if scorer.meta.get("exemplar_match") == "dive_number" and not scoring.dive_type:
        raise ConfigError("this model compares the dive with exemplars of its dive type: give "
                          "--dive_type")
    if scorer.meta.get("uses_difficulty") and scoring.difficulty is None:
        raise ConfigError("this model multiplies its prediction by the degree of difficulty: "
                          "give --difficulty")
    action = flag_defs.scoring_action(scorer.meta, scoring.action)
    results = predict_lib.Results(scoring.output_json)
    print(f"Model: {scorer.description}", flush=True)

    def score(path: str) -> dict:
        result = predict_lib.score_dive(scorer, path, scoring.end_time, scoring.end_frame,
                                        scoring.difficulty, scoring.progress, action=action,
                                        dive_type=scoring.dive_type)
        print(reporting.format_result(result), flush=True)
        return predict_lib.json_ready(result)

    try:
        return results.score_each(videos, score)
    finally:
        connection.close()

if __name__ == "__main__":
    define_flags()
    flag_defs.run(main)

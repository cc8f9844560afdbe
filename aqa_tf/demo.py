r"""A web page to score a dive: drop a video, see the score, the sub-actions, the commentary and
how each clip counted; scan a long video for its dives.

  python -m aqa_tf.demo --model saved_models/quickstart/1          # then open the page
  python -m aqa_tf.demo --model quickstart_float16.tflite --port 8080
  python -m aqa_tf.demo --server localhost:8500 --model_name quickstart   # TF Serving (gRPC)
  python -m aqa_tf.demo --rest http://localhost:8501 --model_name quickstart

The page (Gradio; `pip install -r requirements-demo.txt`) scores with the same library calls as
`aqa_tf.predict`, and shows a bad file's error in the line `aqa_tf.predict` prints. docs/demo.md.
"""

import os
import tempfile

from aqa_tf import flag_defs
from aqa_tf.config import ConfigError, DemoOptions, PredictOptions, ServingClientOptions


def define_flags():
    """The model (`--model`, or a TF Serving server) and where the page is served."""
    flag_defs.define_config_flags(PredictOptions, only=("model",))
    flag_defs.define_config_flags(ServingClientOptions)
    flag_defs.define_config_flags(DemoOptions)


def check_model(model: str, serving: ServingClientOptions):
    """Refuses a model option that cannot work, before anything is loaded."""
    if bool(model) == bool(serving.server or serving.rest):
        raise ConfigError("give --model (an export) or --server / --rest (a TF Serving "
                          "server), one of them")
    if model and not os.path.exists(model):
        raise FileNotFoundError(f"--model={model}: no such file or folder")


def load_model(model: str, serving: ServingClientOptions):
    """A `demo_app.DemoModel` of the export `model`, or of the TF Serving model `serving`."""
    from aqa_tf.serving import demo_app
    from aqa_tf.serving import predict_lib
    check_model(model, serving)
    if model:
        return demo_app.DemoModel(predict_lib.open_scorer(model), model)
    from aqa_tf.serving import client
    connection = client.connect(serving.server, serving.rest, serving.model_name,
                                serving.model_version, serving.timeout)
    meta = client.read_metadata(serving.metadata) if serving.metadata else None
    return demo_app.DemoModel(client.serving_scorer(connection, meta))


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments {argv[1:]}: the page takes its videos")
    options = flag_defs.config_from_flags(DemoOptions)
    model_path = flag_defs.config_from_flags(PredictOptions).model
    serving = flag_defs.config_from_flags(ServingClientOptions)
    check_model(model_path, serving)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ConfigError("the page needs Gradio: pip install -r requirements-demo.txt"
                          ) from None
    from aqa_tf.serving import demo_app
    model = load_model(model_path, serving)
    examples_dir = os.path.join(tempfile.gettempdir(), "aqa_tf_demo_examples")
    os.makedirs(examples_dir, exist_ok=True)
    examples = demo_app.example_videos(examples_dir, options.examples, model.scorer.meta)
    page = demo_app.build(model, examples, options.queue_size)
    print(f"Model: {model.scorer.description}\nPage: http://{options.host}:{options.port}",
          flush=True)
    page.launch(server_name=options.host, server_port=options.port, show_error=True,
                allowed_paths=[model.out_dir, examples_dir], quiet=True)


if __name__ == "__main__":
    define_flags()
    flag_defs.run(main)

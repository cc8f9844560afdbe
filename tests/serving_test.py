"""Serving with TensorFlow Serving: `aqa_tf.serving_client` (its library `aqa_tf.serving.client`),
over gRPC and REST, against stand-ins of the server (tests/tf_serving_standin.py) reads how to
prepare a video from the export's `metadata` signature (or `--metadata FILE`), scores a video as
`aqa_tf.predict` does, returns the commentary, and turns each refusal (unknown model or signature,
wrong dtype, corrupt JPEG, no frames, an older export's input-less `metadata` signature, no server,
no answer in time) into one line that says what to do; the export's signatures as `saved_model_cli`
lists them; deploy/tf_serving's configs as TF Serving's protos. The model is the quickstart network
with its commentary head and random weights."""

import json
import os
import re
import shutil

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.helpers import error_line, free_port, run_module, start_module
from tests.predict_test import dive_frames, quickstart_model

MODEL = "quickstart"
DEPLOY = os.path.join(REPO_ROOT, "deploy", "tf_serving")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """(`<dir>/quickstart/1`: the quickstart model with score, dive and caption heads, exported
    in-process; `<dir>/other/1`: a SavedModel that is not an aqa-tf export; `<dir>/old/1`: the
    same export as an older aqa_tf wrote it, its `metadata` signature without inputs)."""
    import tensorflow as tf
    from aqa_tf.serving import export_lib
    from aqa_tf.data import synthetic
    folder = tmp_path_factory.mktemp("saved_models")
    vocab = synthetic.synthetic_vocabulary()
    vocab.save(str(folder / "vocab.json"))
    model, data_config = quickstart_model("--heads=score,dive,caption",
                                          f"--vocab_file={folder / 'vocab.json'}")
    path = export_lib.export_saved_model(model, data_config, str(folder / MODEL / "1"),
                                         vocab=vocab)

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def double(self, x):
            return {"y": 2 * x}

    other = Doubler()
    tf.saved_model.save(other, str(folder / "other" / "1"), signatures={"double": other.double})
    # The export's own signatures, re-saved with the input-less `metadata` of older exports.
    old = str(folder / "old" / "1")
    loaded = tf.saved_model.load(path)
    with open(os.path.join(path, "assets.extra", "aqa_tf.json")) as f:
        meta_json = f.read()
    loaded.old_metadata = tf.function(lambda: {"json": tf.constant(meta_json)},
                                      input_signature=[])
    signatures = dict(loaded.signatures)
    signatures["metadata"] = loaded.old_metadata.get_concrete_function()
    tf.saved_model.save(loaded, old, signatures=signatures)
    shutil.copytree(os.path.join(path, "assets.extra"), os.path.join(old, "assets.extra"))
    return path, str(folder / "other" / "1"), old


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A synthetic dive at 171x128 (the client resizes it to the stored 86x64)."""
    from aqa_tf.data import video as video_lib
    path = str(tmp_path_factory.mktemp("videos") / "dive.mp4")
    video_lib.write_video(path, dive_frames(128, 171), 25)
    return path


@pytest.fixture(scope="module")
def servers(export):
    """Both stand-ins: `quickstart` versions 1 and 2 (the same export), label stable -> 1;
    `other` version 1; `old` version 1."""
    from tests.tf_serving_standin import TFServingStandin
    with TFServingStandin({MODEL: {1: export[0], 2: export[0]}, "other": {1: export[1]},
                           "old": {1: export[2]}}, labels={MODEL: {"stable": 1}}) as standin:
        yield standin


@pytest.fixture(scope="module")
def reference(export, video):
    """What `aqa_tf.predict --model <export>` finds, in-process: the SavedModel's own
    `serving_jpeg` and `caption_jpeg` on the same decoded window."""
    from aqa_tf.serving import predict_lib
    scorer = predict_lib.Scorer.from_saved_model(export[0])
    return predict_lib.score_dive(scorer, video, progress=False)


def _assert_same_result(result, reference):
    assert abs(result["score"] - reference["score"]) < 1e-4
    assert result["sub_actions"].keys() == reference["sub_actions"].keys()
    for head, ranked in reference["sub_actions"].items():
        assert [label for label, _ in result["sub_actions"][head]] == [l for l, _ in ranked]
        np.testing.assert_allclose([p for _, p in result["sub_actions"][head]],
                                   [p for _, p in ranked], atol=1e-5)
    np.testing.assert_allclose(result["clip_scores"], reference["clip_scores"], atol=1e-4)
    assert result["commentary"] == reference["commentary"]


def test_grpc_and_rest_clients_score_as_predict_does(export, servers, reference, video):
    from aqa_tf.serving import client as serving_client
    from aqa_tf.serving import predict_lib
    meta_file = serving_client.read_metadata(export[0])
    grpc_client = serving_client.connect(server=servers.grpc_address, model_name=MODEL,
                                         model_version="2")
    rest_client = serving_client.connect(rest=servers.rest_url, model_name=MODEL,
                                         model_version="stable")
    # Both read aqa_tf.json from the `metadata` signature (REST: its only output, unnamed).
    assert serving_client.fetch_metadata(grpc_client) == meta_file
    assert serving_client.fetch_metadata(rest_client) == meta_file
    assert meta_file["signatures"] == ["serving_default", "serving_jpeg", "metadata", "caption",
                                       "caption_jpeg"]
    assert rest_client.url == f"{servers.rest_url}/v1/models/{MODEL}/labels/stable:predict"
    for client in (grpc_client, rest_client):
        scorer = serving_client.serving_scorer(client)
        result = predict_lib.score_dive(scorer, video, progress=False)
        print(f"{client.protocol}: score {result['score']:.6f} (predict: "
              f"{reference['score']:.6f}); commentary: {result['commentary']}")
        _assert_same_result(result, reference)
        assert result["window_end_time"] == reference["window_end_time"]
    # The commentary is a sentence of the synthetic vocabulary (random weights: no <eos>
    # before the 40-word limit is needed, but every word is known).
    from aqa_tf.data import synthetic
    words = reference["commentary"].split()
    assert 0 < len(words) <= 40
    assert set(words) <= set(synthetic.synthetic_vocabulary().word_to_ix)


def _start(folder, name, *args):
    """`python -m aqa_tf.serving_client ARGS --noprogress` started (the clients of a test run
    side by side), its output in `folder`/`name`.stdout and .stderr."""
    outputs = [os.path.join(str(folder), f"{name}.{kind}") for kind in ("stdout", "stderr")]
    proc = start_module("aqa_tf.serving_client", *args, "--noprogress", log=outputs[0],
                        stderr_log=outputs[1])
    proc.outputs = outputs
    return proc


def _finish(proc, expect):
    proc.wait(timeout=300)
    stdout, stderr = (open(path, errors="replace").read() for path in proc.outputs)
    assert proc.returncode == expect, f"{stdout[-2000:]}\n{stderr[-4000:]}"
    return stdout, stderr


def test_cli_prints_the_table_of_predict(export, servers, reference, video, tmp_path):
    """gRPC and REST read the metadata from the server; `--metadata FILE` overrides it (an older
    export, whose `metadata` signature no server can run over REST, is scored with it)."""
    from aqa_tf.metrics import report as reporting
    outputs = {name: str(tmp_path / f"{name}.json") for name in ("gRPC", "REST", "old")}
    procs = {
        "gRPC": _start(tmp_path, "gRPC", video, f"--server={servers.grpc_address}",
                       f"--model_name={MODEL}", f"--output_json={outputs['gRPC']}"),
        "REST": _start(tmp_path, "REST", video, f"--rest={servers.rest_url}",
                       f"--model_name={MODEL}", "--model_version=1",
                       f"--output_json={outputs['REST']}"),
        "old": _start(tmp_path, "old", video, f"--rest={servers.rest_url}", "--model_name=old",
                      f"--metadata={export[2]}/assets.extra/aqa_tf.json",
                      f"--output_json={outputs['old']}"),
    }
    table = reporting.format_result(reference)
    for name, proc in procs.items():
        stdout, _ = _finish(proc, 0)
        print(stdout)
        assert table in stdout, name
        protocol = "gRPC" if name == "gRPC" else "REST"
        address = servers.grpc_address if protocol == "gRPC" else servers.rest_url
        assert f"Model: model {MODEL if name != 'old' else 'old'}" in stdout
        assert f"on the TF Serving {protocol} server {address}" in stdout
        with open(outputs[name]) as f:
            (result,) = json.load(f)
        assert abs(result["score"] - reference["score"]) < 1e-4
        assert result["commentary"] == reference["commentary"]


def test_cli_errors_are_one_actionable_line(export, servers, video, tmp_path):
    meta = f"--metadata={export[0]}/assets.extra/aqa_tf.json"
    dead = free_port()
    cases = {
        # A model that is not an aqa-tf export: TF Serving's own message for the signature.
        "signature": ([f"--server={servers.grpc_address}", "--model_name=other", meta],
                      [f"gRPC server {servers.grpc_address}, model other, signature serving_jpeg",
                       'FAILED_PRECONDITION: Serving signature key "serving_jpeg" not found',
                       "is --model_name=other an export of `python -m aqa_tf.export`?"]),
        "model": ([f"--server={servers.grpc_address}", "--model_name=nosuch"],
                  ["NOT_FOUND: Servable not found for request: Latest(nosuch)",
                   "Check --model_name and --model_version against the server's models.config"]),
        # An older export without --metadata: TF Serving's REST API cannot run its metadata.
        "old export": ([f"--rest={servers.rest_url}", "--model_name=old"],
                       ["model old, signature metadata: HTTP 400: Failed to get input map for "
                        "signature: metadata",
                        "This export's `metadata` signature has no input `batch` (an export of "
                        "an older aqa_tf): export the model again with this version of aqa_tf "
                        "(python -m aqa_tf.export), or give --metadata "
                        "<export>/assets.extra/aqa_tf.json"]),
        "unreachable": ([f"--rest=http://127.0.0.1:{dead}", f"--model_name={MODEL}"],
                        [f"REST server http://127.0.0.1:{dead}, model {MODEL}: cannot reach "
                         "the server", "listening with --rest_api_port? (docker: -p 8501:8501)"]),
    }
    procs = {name: _start(tmp_path, name.replace(" ", "_"), video, *args)
             for name, (args, _) in cases.items()}
    for name, proc in procs.items():
        _, stderr = _finish(proc, 2)
        line = error_line(stderr)
        print(line)
        for words in cases[name][1]:
            assert words in line, (name, line)


def _jpeg_window(reference, meta):
    from aqa_tf.serving import predict_lib
    return predict_lib.Scorer(None, None, meta, "").model_frames(reference["window"])[None]


def test_refusals_at_the_server_boundary(export, servers, reference):
    from aqa_tf.config import ConfigError
    from aqa_tf.serving import client as serving_client
    meta = serving_client.read_metadata(export[0])
    window = _jpeg_window(reference, meta)
    zero = np.zeros([1], np.float32)
    addresses = {"gRPC": {"server": servers.grpc_address}, "REST": {"rest": servers.rest_url}}
    clients = {protocol: serving_client.connect(**address, model_name=MODEL)
               for protocol, address in addresses.items()}

    def refusal(client, signature, inputs, **kwargs):
        with pytest.raises(serving_client.ServingError) as caught:
            client.predict(signature, inputs, **kwargs)
        line = f"error: {caught.value}"
        print(line)
        assert "\n" not in line
        assert line.startswith(f"error: {client.protocol} server {client.address}, model {MODEL}")
        return caught.value

    for protocol, client in clients.items():
        rest = protocol == "REST"
        # A wrong signature name.
        error = refusal(client, "serving_jpg", {"frames": window, "difficulty": zero})
        assert error.status == ("HTTP 400" if rest else "FAILED_PRECONDITION")
        assert error.message == (
            'Serving signature name: "serving_jpg" not found in signature def' if rest
            else 'Serving signature key "serving_jpg" not found.')
        assert "has the signatures serving_default, serving_jpeg, metadata" in error.advice
        # A corrupt JPEG among the frames: TensorFlow's message, from the graph's DecodeJpeg.
        corrupt = window.copy()
        corrupt[0, 5] = b"\xff\xd8 not a JPEG"
        scorer = serving_client.serving_scorer(client, meta)
        with pytest.raises(serving_client.ServingError) as caught:
            scorer.score(corrupt)
        line = f"error: {caught.value}"
        print(line)
        assert "\n" not in line and "signature serving_jpeg" in line
        assert caught.value.status == ("HTTP 400" if rest else "INVALID_ARGUMENT")
        assert re.search(r"JPEG|image", caught.value.message), line
        assert "(node map/while/DecodeJpeg)" in line
        assert line.endswith("A frame of the request is not a valid JPEG image")
        # No frames: the client refuses to send them, the server (asked directly) refuses too,
        # with the graph's own message; so does it a batch of no video.
        before = servers.repository.requests
        with pytest.raises(ConfigError, match=r"window of shape \[1, 0\]: no frames; the "
                           "signatures pad"):
            scorer.score(np.empty([1, 0], dtype=object))
        assert servers.repository.requests == before
        error = refusal(client, "serving_jpeg", {"frames": np.empty([1, 0], dtype=object),
                                                 "difficulty": zero})
        assert error.status == ("HTTP 400" if rest else "INVALID_ARGUMENT")
        assert "input `frames`: a video of 0 frames" in error.message
        assert "window has no frames" in error.advice
        if not rest:  # (JSON has no shape for an empty batch: `[]` is read as shape (0,))
            error = refusal(client, "serving_default", {
                "video": np.zeros([0, 3, 64, 86, 3], np.uint8),
                "difficulty": np.zeros([0], np.float32)})
            assert "input `video`: a batch of 0 videos" in error.message
        # A version the server does not have.
        error = refusal(serving_client.connect(**addresses[protocol], model_name=MODEL,
                                               model_version="7"),
                        "serving_jpeg", {"frames": window, "difficulty": zero})
        assert error.status == ("HTTP 404" if rest else "NOT_FOUND")
        assert error.message == "Servable not found for request: Specific(quickstart, 7)"
        assert "Check --model_name and --model_version" in str(error)
    # Wrong dtypes: over gRPC the tensor keeps its own (numpy's float64), over REST the JSON
    # is read as the signature's dtype, and a string is no float.
    error = refusal(clients["gRPC"], "serving_jpeg", {"frames": window,
                                                      "difficulty": np.zeros([1])})
    assert error.status == "INVALID_ARGUMENT"
    assert error.message == "Expects arg[0] to be float but double is provided"
    assert "export the model again with this version of aqa_tf" in error.advice
    error = refusal(clients["REST"], "serving_jpeg", {"frames": window,
                                                      "difficulty": np.array(["hard"], object)})
    assert error.message == ('JSON Value: {"b64": "aGFyZA=="} Type: Object is not of expected '
                             'type: float')
    # A missing input: TF Serving C-escapes its message (\' is not valid JSON); the client
    # still reads it.
    error = refusal(clients["REST"], "serving_jpeg", {"frames": window})
    assert error.message == "Missing named input: difficulty in 'inputs' object."
    assert "export the model again" in error.advice
    error = refusal(clients["gRPC"], "serving_jpeg", {"frames": window})
    assert error.message == ("input size does not match signature: 1!=2 len({frames}) != "
                             "len({difficulty,frames}). Sent extra: {}. Missing but required: "
                             "{difficulty}.")
    # An unknown version label.
    error = refusal(serving_client.connect(rest=servers.rest_url, model_name=MODEL,
                                           model_version="beta"),
                    "serving_jpeg", {"frames": window, "difficulty": zero})
    assert (error.status, error.message) == ("HTTP 400", "Unrecognized servable version label: "
                                             "beta")


def test_older_export_metadata_signature_without_inputs(servers):
    """An older export's `metadata` has no input: TF Serving refuses the client's `batch` over
    gRPC and cannot run the signature over REST; both say: export again, or give --metadata."""
    from aqa_tf.serving import client as serving_client
    expected = {"gRPC": ("INVALID_ARGUMENT", "input size does not match signature: 1!=0 "
                         "len({batch}) != len({}). Sent extra: {batch}. Missing but required: "
                         "{}."),
                "REST": ("HTTP 400", "Failed to get input map for signature: metadata")}
    for option in ({"server": servers.grpc_address}, {"rest": servers.rest_url}):
        client = serving_client.connect(**option, model_name="old")
        with pytest.raises(serving_client.ServingError) as caught:
            serving_client.fetch_metadata(client)
        print(f"error: {caught.value}")
        assert (caught.value.status, caught.value.message) == expected[client.protocol]
        assert caught.value.advice.startswith("this export's `metadata` signature has no input")
        assert caught.value.advice.endswith("or give --metadata <export>/assets.extra/aqa_tf.json")


def test_no_answer_in_time_and_no_server(export, servers, reference):
    from aqa_tf.serving import client as serving_client
    window = _jpeg_window(reference, serving_client.read_metadata(export[0]))
    inputs = {"frames": window, "difficulty": np.zeros([1], np.float32)}
    servers.repository.delay_s = 1.5
    try:
        for option in ({"server": servers.grpc_address}, {"rest": servers.rest_url}):
            client = serving_client.connect(**option, model_name=MODEL, timeout=0.3)
            with pytest.raises(serving_client.ServingError,
                               match=r"signature serving_jpeg: (DEADLINE_EXCEEDED: )?no answer "
                                     r"within --timeout=0\.3 s\. The server may still be loading"):
                client.predict("serving_jpeg", inputs)
    finally:
        servers.repository.delay_s = 0.0
    dead = free_port()
    client = serving_client.connect(server=f"127.0.0.1:{dead}", model_name=MODEL)
    with pytest.raises(serving_client.ServingError) as caught:
        client.predict("serving_jpeg", inputs)
    print(f"error: {caught.value}")
    assert str(caught.value).startswith(f"gRPC server 127.0.0.1:{dead}, model {MODEL}: cannot "
                                        "reach the server (")
    assert str(caught.value).endswith("listening with --port? (docker: -p 8500:8500)")


def test_rest_answers_in_tf_serving_format(servers):
    """The stand-in's REST API as TF Serving's: the only output of a signature unnamed, float32
    in their shortest form; the client names it."""
    import urllib.request
    from aqa_tf.serving import client as serving_client
    request = urllib.request.Request(
        f"{servers.rest_url}/v1/models/other/versions/1:predict", method="POST",
        data=json.dumps({"signature_name": "double", "inputs": {"x": [0.1, 2]}}).encode())
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert json.loads(reply.read()) == {"outputs": [0.2, 4.0]}
    client = serving_client.connect(rest=servers.rest_url, model_name="other")
    outputs = client.predict("double", {"x": np.float32([0.1, 2])}, only_output="y")
    assert list(outputs) == ["y"] and outputs["y"].dtype == np.float32
    np.testing.assert_array_equal(outputs["y"], np.float32([0.2, 4]))
    # Outside /v1/, TF Serving has no handler: 404 without a body.
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(f"{servers.rest_url}/models/other:predict",
                                                      data=b"{}", method="POST"), timeout=30)
    assert caught.value.code == 404


def _signatures(text: str):
    """`saved_model_cli show --all` -> {signature: {"inputs"/"outputs": {name: (dtype, shape)},
    "method": ...}}."""
    found = {}
    for block in re.split(r"\n(?=signature_def\[')", text.split("Concrete Functions")[0]):
        name = re.match(r"signature_def\['([^']+)'\]", block)
        if not name:
            continue
        tensors = re.findall(r"(inputs|outputs)\['([^']+)'\] tensor_info:\s+dtype: (\w+)\s+"
                             r"shape: (\S+(?: \S+)*)\n", block)
        found[name.group(1)] = {"inputs": {}, "outputs": {},
                                "method": re.search(r"Method name is: (.*)", block).group(1)}
        for kind, tensor, dtype, shape in tensors:
            found[name.group(1)][kind][tensor] = (dtype, shape)
    return found


def test_saved_model_cli_lists_the_signatures(export):
    proc = run_module("tensorflow.python.tools.saved_model_cli", "show", "--all", "--dir",
                      export[0], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    signatures = _signatures(proc.stdout)
    print({name: sig["inputs"] for name, sig in signatures.items()})
    assert set(signatures) >= {"serving_default", "serving_jpeg", "metadata", "caption",
                               "caption_jpeg"}
    assert signatures["serving_default"]["inputs"] == {
        "video": ("DT_UINT8", "(-1, -1, -1, -1, 3)"), "difficulty": ("DT_FLOAT", "(-1)")}
    assert signatures["serving_jpeg"]["inputs"] == {
        "frames": ("DT_STRING", "(-1, -1)"), "difficulty": ("DT_FLOAT", "(-1)")}
    assert signatures["metadata"]["inputs"] == {"batch": ("DT_INT32", "(-1)")}
    assert signatures["metadata"]["outputs"] == {"json": ("DT_STRING", "(-1)")}
    assert signatures["caption_jpeg"]["inputs"] == {"frames": ("DT_STRING", "(-1, -1)")}
    assert signatures["caption_jpeg"]["outputs"] == {"caption": ("DT_STRING", "(-1)"),
                                                     "caption_ids": ("DT_INT32", "(-1, 41)")}
    for name in ("serving_default", "serving_jpeg"):
        outputs = signatures[name]["outputs"]
        assert outputs["score"] == ("DT_FLOAT", "(-1)")
        assert outputs["position_probabilities"] == ("DT_FLOAT", "(-1, 3)")
        assert outputs["clip_scores"] == ("DT_FLOAT", "(-1, 3)")
    for name in ("serving_default", "serving_jpeg", "metadata", "caption", "caption_jpeg"):
        # TF Serving's Predict API accepts predict, classify and regress signatures.
        assert signatures[name]["method"] == "tensorflow/serving/predict"


def _batching_parameters_class():
    """TF Serving's `BatchingParameters` message (session_bundle_config.proto; not in the
    tensorflow-serving-api package), its fields and numbers as there."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/batching_parameters_test.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    message = proto.message_type.add(name="BatchingParameters")
    for number, name, wrapper in ((1, "max_batch_size", "Int64Value"),
                                  (2, "batch_timeout_micros", "Int64Value"),
                                  (3, "max_enqueued_batches", "Int64Value"),
                                  (4, "num_batch_threads", "Int64Value"),
                                  (5, "thread_pool_name", "StringValue")):
        message.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                          type_name=f".google.protobuf.{wrapper}", label=field.LABEL_OPTIONAL)
    message.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64,
                      label=field.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL,
                      label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def test_deploy_configs_are_tf_serving_protos():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2
    with open(os.path.join(DEPLOY, "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == (
        MODEL, "/models/quickstart", "tensorflow")
    versions = list(model.model_version_policy.specific.versions)
    assert versions == [1, 2]
    assert dict(model.version_labels) == {"stable": 1, "canary": 2}
    assert set(model.version_labels.values()) <= set(versions)
    with open(os.path.join(DEPLOY, "batching_parameters.txt")) as f:
        batching = text_format.Parse(f.read(), _batching_parameters_class()())
    sizes = list(batching.allowed_batch_sizes)
    assert sizes == sorted(sizes) and sizes[-1] == batching.max_batch_size.value == 8
    assert 0 < batching.batch_timeout_micros.value <= 10_000
    assert batching.num_batch_threads.value >= 1 and batching.max_enqueued_batches.value >= 1
    assert not batching.pad_variable_length_inputs
    # The README's docker command mounts what models.config names, with the flags it needs.
    with open(os.path.join(DEPLOY, "README.md")) as f:
        readme = f.read()
    command = re.search(r"docker run .*?\n```", readme, flags=re.S).group(0)
    for part in ('-v "$PWD/saved_models/quickstart:/models/quickstart"',
                 '-v "$PWD/deploy/tf_serving:/config"', "-p 8500:8500", "-p 8501:8501",
                 "tensorflow/serving:2.21.0", "--model_config_file=/config/models.config",
                 "--enable_batching", "--batching_parameters_file=/config/"
                 "batching_parameters.txt", "--allow_version_labels_for_unavailable_models"):
        assert part in command, part


def test_client_options_are_checked(tmp_path):
    from aqa_tf.serving import client as serving_client
    from aqa_tf.config import ConfigError
    bad = {
        "exactly one of --server": dict(server="localhost:8500", rest="http://localhost:8501"),
        "give exactly one": dict(),
        "expected HOST:PORT": dict(server="localhost"),
        "expected a URL http://HOST:PORT": dict(rest="localhost:8501"),
        "expected a version number or a version label": dict(server="h:1", model_version="a b"),
        "must be positive": dict(server="h:1", timeout=0),
    }
    for problem, options in bad.items():
        with pytest.raises(ConfigError, match=problem):
            serving_client.connect(**options)
    client = serving_client.connect(rest="http://h:8501/", model_name="a/b", model_version="3")
    assert client.url == "http://h:8501/v1/models/a%2Fb/versions/3:predict"
    (tmp_path / "other.json").write_text('{"stored_height": 64}')
    with pytest.raises(ConfigError, match="not an aqa-tf metadata file .* no stored_width, "
                       "window_length"):
        serving_client.read_metadata(str(tmp_path / "other.json"))

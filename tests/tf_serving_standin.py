"""Stand-ins for TensorFlow Serving's Predict APIs, gRPC and REST, for tests.

`tensorflow_model_server` cannot be installed where the tests run. `TFServingStandin` serves
SavedModels (`tf.saved_model.load(path).signatures`) on 127.0.0.1 and answers the requests an
aqa-tf client sends as TF Serving 2.x does: the same request and response formats (gRPC
`PredictRequest`/`PredictResponse`; REST `POST /v1/models/<name>[/versions/<n>|/labels/<l>]
:predict` with `{"signature_name", "inputs"}` -> `{"outputs"}`, strings as `{"b64": ...}`, the
output of a one-output signature left unnamed), and the same status codes and messages for an
unknown model, version or label, an unknown signature, inputs that do not match the signature,
a signature without inputs called over REST (the `metadata` signature of an export of an older
aqa_tf), and errors raised by the graph (a corrupt JPEG: INVALID_ARGUMENT with TensorFlow's
message). The messages are TF Serving's own
(tensorflow_serving/servables/tensorflow/predict_util.cc, model_servers/http_rest_api_handler.cc,
util/json_tensor.cc); where these stand-ins must differ, the docstring says so.

What a real server adds and these do not: loading versions as they appear under a base path and
unloading old ones (model_version_policy, hot reload of models.config), request batching
(`--enable_batching`, under which a signature without inputs fails over gRPC too: "Batching
Run() must have at least one input tensor"; every signature of a current export has an input),
model status and metadata APIs (GetModelStatus, GetModelMetadata, `GET /v1/models/...`),
classify/regress, warm-up requests, Prometheus monitoring, TFRT, and real concurrency and
resource limits.
"""

import base64
import binascii
import http.server
import json
import re
import threading
import time
from concurrent import futures
from typing import Dict, Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

DEFAULT_SIGNATURE = "serving_default"
# TF Serving's `ToHTTPStatusCode` (model_servers/http_server.cc).
HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500, grpc.StatusCode.UNAUTHENTICATED: 401,
}
_STATUS_OF_CODE = {code.value[0]: code for code in grpc.StatusCode}
# TensorFlow's DataTypeString names, which TF Serving's messages use.
_DTYPE_NAMES = {"float32": "float", "float64": "double"}
_JSON_TYPE_NAMES = {type(None): "Null", dict: "Object", list: "Array", str: "String",
                    int: "Number", float: "Number"}
_REST_PATH = re.compile(r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
                        r":(classify|regress|predict)")
_GRPC_OPTIONS = [("grpc.max_receive_message_length", 2**31 - 1),
                 ("grpc.max_send_message_length", 2**31 - 1)]


class ServingStatus(Exception):
    """A refusal: a gRPC status code and TF Serving's message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _dtype_name(dtype: tf.DType) -> str:
    return _DTYPE_NAMES.get(dtype.name, dtype.name)


class ModelRepository:
    """SavedModels by name and version (each path loaded once), with version labels.

    Attributes:
      delay_s: seconds every request waits before it is answered (to test client timeouts).
      requests: number of Predict requests received, answered or refused.
    """

    def __init__(self, models: Dict[str, Dict[int, str]],
                 labels: Optional[Dict[str, Dict[str, int]]] = None):
        loaded = {}

        def load(path):
            if path not in loaded:
                loaded[path] = tf.saved_model.load(path)
            return loaded[path]

        self._models = {name: {version: load(path) for version, path in versions.items()}
                        for name, versions in models.items()}
        self._labels = labels or {}
        self.delay_s, self.requests = 0.0, 0
        self._lock = threading.Lock()

    def servable(self, name: str, version: Optional[int] = None, label: str = ""):
        """(loaded SavedModel, version) as TF Serving's ServerCore finds it."""
        if label:
            if label not in self._labels.get(name, {}):
                raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"Unrecognized servable version label: {label}")
            version = self._labels[name][label]
        versions = self._models.get(name, {})
        if version is None and versions:
            version = max(versions)
        if version not in versions:
            request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise ServingStatus(grpc.StatusCode.NOT_FOUND,
                                f"Servable not found for request: {request}")
        return versions[version], version

    def signature(self, loaded, signature_name: str, rest: bool):
        """The signature function; an unknown name is refused with the message of the gRPC
        Predict (FAILED_PRECONDITION) or of the REST handler (INVALID_ARGUMENT)."""
        name = signature_name or DEFAULT_SIGNATURE
        if name not in loaded.signatures:
            if rest:
                raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT,
                                    f'Serving signature name: "{name}" not found in signature def')
            raise ServingStatus(grpc.StatusCode.FAILED_PRECONDITION,
                                f'Serving signature key "{name}" not found.')
        return loaded.signatures[name]

    def run(self, function, inputs: Dict[str, tf.Tensor]) -> Dict[str, np.ndarray]:
        """Checks `inputs` against the signature as TF Serving does (names, then dtypes), runs
        it and returns its outputs; the graph's errors keep their code and message.

        Unlike TF Serving, a shape the signature rules out (e.g. the wrong rank) is refused
        here with a message of this stand-in: TF Serving would fail later, in the graph."""
        with self._lock:
            self.requests += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        specs = function.structured_input_signature[1]
        sent, expected = sorted(inputs), sorted(specs)
        if len(sent) != len(expected):
            extra, missing = sorted(set(sent) - set(expected)), sorted(set(expected) - set(sent))
            raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT, (
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sent)}}}) != len({{{','.join(expected)}}}). Sent extra: "
                f"{{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}."))
        for name in sent:
            if name not in specs:
                raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"input tensor alias not found in signature: {name}. Inputs expected to be "
                    f"in the set {{{','.join(expected)}}}."))
        for index, name in enumerate(expected):
            spec, tensor = specs[name], inputs[name]
            if tensor.dtype != spec.dtype:
                raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"Expects arg[{index}] to be {_dtype_name(spec.dtype)} but "
                    f"{_dtype_name(tensor.dtype)} is provided"))
            if not spec.shape.is_compatible_with(tensor.shape):
                raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"input {name}: shape {tensor.shape} does not fit the signature's "
                    f"{spec.shape} (message of the TF Serving stand-in)"))
        try:
            outputs = function(**inputs)
        except tf.errors.OpError as error:
            raise ServingStatus(_STATUS_OF_CODE.get(error.error_code, grpc.StatusCode.UNKNOWN),
                                error.message) from error
        return {name: value.numpy() for name, value in outputs.items()}


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):

    def __init__(self, repository: ModelRepository):
        self.repository = repository

    def Predict(self, request, context):
        spec = request.model_spec
        try:
            version = spec.version.value if spec.HasField("version") else None
            loaded, version = self.repository.servable(spec.name, version, spec.version_label)
            function = self.repository.signature(loaded, spec.signature_name, rest=False)
            inputs = {name: tf.constant(tf.make_ndarray(proto), dtype=tf.as_dtype(proto.dtype))
                      for name, proto in request.inputs.items()}
            outputs = self.repository.run(function, inputs)
        except ServingStatus as status:
            context.abort(status.code, status.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = spec.signature_name or DEFAULT_SIGNATURE
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response


def _json_type(value) -> str:
    if value is True or value is False:
        return str(value)
    return _JSON_TYPE_NAMES.get(type(value), "Number")


def _json_leaf(value, dtype: tf.DType):
    """One JSON value of a request -> a Python value of `dtype` (json_tensor.cc's checks)."""
    def type_error():
        return ServingStatus(grpc.StatusCode.INVALID_ARGUMENT, (
            f"JSON Value: {json.dumps(value)} Type: {_json_type(value)} is not of expected "
            f"type: {_dtype_name(dtype)}"))

    if dtype == tf.string:
        if isinstance(value, dict):
            if set(value) != {"b64"} or not isinstance(value["b64"], str):
                raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"JSON Value: {json.dumps(value)} not formatted correctly for base64 data"))
            try:
                return base64_decode(value["b64"])
            except ValueError as error:
                raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT,
                                    "Unable to base64 decode") from error
        if isinstance(value, str):
            return value.encode("utf-8")
        raise type_error()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if dtype == tf.bool and isinstance(value, bool):
            return value
        raise type_error()
    if dtype.is_integer and not isinstance(value, int):
        raise type_error()
    return value


def base64_decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise ValueError(str(error)) from error


def tensor_from_json(value, dtype: tf.DType) -> tf.Tensor:
    """A columnar JSON input -> a tensor of the signature's `dtype`: the shape read off the
    first element at each level, every list checked against it (json_tensor.cc)."""
    shape, probe = [], value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    flat = []

    def fill(item, level):
        if not isinstance(item, list):
            if level != len(shape):
                raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT, (
                    f"JSON Value: {json.dumps(item)} found at incorrect level: {level + 1} in "
                    f"the JSON DOM. Expected at level: {len(shape)}"))
            flat.append(_json_leaf(item, dtype))
            return
        if level >= len(shape):
            raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT, (
                f"Encountered list at unexpected level: {level} expected < {len(shape)}"))
        if len(item) != shape[level]:
            raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT, (
                f"Encountered list at unexpected size: {len(item)} at level: {level} expected "
                f"size: {shape[level]}"))
        for element in item:
            fill(element, level + 1)

    fill(value, 0)
    array = np.array(flat, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
    return tf.constant(array.reshape(shape), dtype=dtype)


def json_from_output(name: str, array: np.ndarray):
    """An output -> TF Serving's JSON: float32 in their shortest form, strings as text, or as
    `{"b64": ...}` for outputs named `*_bytes`.

    TF Serving writes any other string as it is, even bytes that are not UTF-8 (invalid JSON);
    this stand-in writes those as `{"b64": ...}` instead."""
    array = np.asarray(array)

    def string(value: bytes):
        if not name.endswith("_bytes"):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}

    def walk(value, fn):
        return [walk(v, fn) for v in value] if isinstance(value, list) else fn(value)

    if array.dtype == object or array.dtype.kind == "S":
        return walk(array.tolist(), string)
    if array.dtype == np.float32:
        # str(np.float32) is the shortest text that reads back as the same float32.
        return walk(array.tolist(), lambda v: float(str(np.float32(v))))
    return array.tolist()


def c_escape(text: str) -> str:
    """absl::CEscape, with which TF Serving writes the message of `{ "error": "..." }` (so that
    a message with `'` or non-ASCII bytes is not valid JSON, as with TF Serving)."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in "\"'\\":
            out.append("\\" + char)
        elif char in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char])
        elif 0x20 <= byte < 0x7f:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return "".join(out)


def _rest_predict(repository: ModelRepository, path: str, body: bytes) -> Dict:
    """`POST <path>` with `body` -> the JSON answer, as TF Serving's HttpRestApiHandler."""
    match = _REST_PATH.fullmatch(path)
    if not match:
        raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT, f"Malformed request: POST {path}")
    name, version, label, method = match.groups()
    if method != "predict":
        raise ServingStatus(grpc.StatusCode.UNIMPLEMENTED,
                            f"{method}: the TF Serving stand-in implements predict only")
    loaded, _ = repository.servable(name, None if version is None else int(version), label or "")
    try:
        request = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT,
                            f"JSON Parse error: {error}") from error
    if request is None:
        raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT,
                            "JSON Parse error: The document is empty")
    if not isinstance(request, dict):
        raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT,
                            f"JSON Value: {json.dumps(request)} Is not object")
    signature_name = request.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT, (
            f"JSON Value: {json.dumps(request)[:200]} not formatted correctly. 'signature_name' "
            "key must be a string value."))
    function = repository.signature(loaded, signature_name, rest=True)
    specs = function.structured_input_signature[1]
    if not specs:
        raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT,
                            f"Failed to get input map for signature: "
                            f"{signature_name or 'DEFAULT'}")
    if "instances" in request:
        raise ServingStatus(grpc.StatusCode.UNIMPLEMENTED, (
            "the TF Serving stand-in implements the columnar format (\"inputs\") only"))
    if "inputs" not in request:
        raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT,
                            "Missing 'inputs' or 'instances' key")
    given = request["inputs"]
    if not isinstance(given, dict) or set(given) == {"b64"}:
        if len(specs) > 1:
            raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT, (
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"))
        given = {next(iter(specs)): given}
    inputs = {}
    for name in sorted(specs):  # TF Serving reads the signature's inputs, ignores others.
        if name not in given:
            raise ServingStatus(grpc.StatusCode.INVALID_ARGUMENT,
                                f"Missing named input: {name} in 'inputs' object.")
        inputs[name] = tensor_from_json(given[name], specs[name].dtype)
    outputs = repository.run(function, inputs)
    if len(outputs) == 1:
        name, value = next(iter(outputs.items()))
        return {"outputs": json_from_output(name, value)}
    return {"outputs": {name: json_from_output(name, value) for name, value in outputs.items()}}


def _rest_handler(repository: ModelRepository):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.path.lower().startswith("/v1/"):
                # TF Serving's HTTP server has no handler there: 404, no body.
                self._reply(404, b"")
                return
            try:
                answer = json.dumps(_rest_predict(repository, self.path, body)).encode("utf-8")
                status = 200
            except ServingStatus as refusal:
                answer = ('{ "error": "' + c_escape(refusal.message) + '" }').encode("ascii")
                status = HTTP_STATUS.get(refusal.code, 500)
            self._reply(status, answer)

        def _reply(self, status: int, body: bytes):
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # The client gave up (its timeout) before the answer.

        def log_message(self, *args):  # Quiet: pytest shows the test's own output.
            pass

    return Handler


class TFServingStandin:
    """A gRPC server and a REST server on 127.0.0.1 (free ports) for `models`.

    Args:
      models: {model name: {version: SavedModel folder}}.
      labels: {model name: {version label: version}} (models.config `version_labels`).

    Attributes:
      grpc_address: HOST:PORT of the gRPC Predict API.
      rest_url: http://HOST:PORT of the REST API.
      repository: the models (`delay_s`, `requests`).
    """

    def __init__(self, models: Dict[str, Dict[int, str]],
                 labels: Optional[Dict[str, Dict[str, int]]] = None):
        self.repository = ModelRepository(models, labels)
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                                 options=_GRPC_OPTIONS)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionService(self.repository), self._grpc)
        port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self.grpc_address = f"127.0.0.1:{port}"
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     _rest_handler(self.repository))
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.rest_url = f"http://127.0.0.1:{self._http.server_port}"

    def close(self):
        self._grpc.stop(grace=None)
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

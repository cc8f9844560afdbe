"""A client of the aqa-tf models that TensorFlow Serving serves, over gRPC or REST.

`connect` opens a `Connection` to one model on one server; `fetch_metadata` asks the export's
`metadata` signature for its `aqa_tf.json` (or `read_metadata` reads the file), and
`serving_scorer` wraps the connection in a `predict_lib.Scorer`, which scores a video as the
local model would. The names of signatures and files come from `aqa_tf.serving.contract`.

A refusal of the server, a server that cannot be reached or one that does not answer in time
raises `ServingError`: one line naming the server, model and signature, what happened and what
to do (a `ConfigError`, so that the command-line entries print it as one line).
"""

import base64
import json
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, Optional, Tuple

import numpy as np

from aqa_tf.config import ConfigError
from aqa_tf.serving import contract
from aqa_tf.serving.contract import METADATA_INPUT, METADATA_SIGNATURE
from aqa_tf.serving.scorer import Scorer

# The signatures of an export, and what the metadata file must hold (`contract`).
EXPORT_SIGNATURES = contract.SIGNATURES
REQUIRED_METADATA = contract.REQUIRED_METADATA
# TF Serving's answers when a request's inputs do not match a signature's, or when it cannot
# run a signature that has no inputs (the `metadata` signature of an older export).
_INPUT_MISMATCH = (r"Expects arg|is not of expected type|input size does not match|"
                   r"input tensor alias not found|Missing named input|Expected input .* to be")
_NO_INPUTS = (r"Failed to get input map for signature|Batching Run\(\) must have at least one "
              r"input|input size does not match")
# TF Serving's answer (UNAVAILABLE, HTTP 503) when its batching queue is full.
_QUEUE_FULL = re.compile(r"batch scheduling queue.* is full")


class ServingError(ConfigError):
    """A model server refused a request, could not be reached or did not answer in time.

    A `ConfigError`, so that `flag_defs.run` prints it as one line. `str()` names the server,
    model and signature, what happened (with the server's own status and message) and what to
    do.

    Attributes:
      where: the server, model and signature.
      status: the gRPC status name (`INVALID_ARGUMENT`) or `HTTP <code>`; empty when the client
        refused to send the request or never got an answer.
      message: the server's message, on one line.
      advice: what to do, or "".
    """

    def __init__(self, where: str, status: str, message: str, advice: str = ""):
        self.where, self.status, self.message, self.advice = where, status, message, advice
        problem = f"{status}: {message}" if status else message
        super().__init__(f"{where}: {problem.rstrip('.')}"
                         + (f". {advice[:1].upper()}{advice[1:]}" if advice else ""))


def one_line(message: str) -> str:
    """A TensorFlow or server message on one line: the graph's function names and node lists
    dropped, the failing node kept as `(node X)`."""
    nodes = re.findall(r"\{\{node ([^}]+)\}\}", message)
    message = re.sub(r"\[\[.*?\]\]", " ", message, flags=re.S)
    message = re.sub(r"\{\{function_node [^}]*\}\}|\[Op:[^\]]*\]", " ", message)
    message = " ".join(message.split())
    return message + (f" (node {nodes[-1]})" if nodes else "")


def parse_version(text: str) -> Tuple[Optional[int], str]:
    """`--model_version` -> (version number or None, version label or "")."""
    text = text.strip()
    if not text:
        return None, ""
    if text.isdigit():
        return int(text), ""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", text):
        raise ConfigError(f"--model_version={text}: expected a version number or a version "
                          "label (letters, digits, _ . -)")
    return None, text


class Connection:
    """One model on one server: `predict(signature, inputs)` sends numpy inputs to a signature
    and returns its numpy outputs, or raises `ServingError`."""

    protocol = ""
    port_flag = ""
    docker_port = 0

    def __init__(self, address: str, model_name: str, model_version: str = "",
                 timeout: float = 60.0):
        if not model_name:
            raise ConfigError("--model_name is empty: give the name of the model on the server")
        if timeout <= 0:
            raise ConfigError(f"--timeout={timeout}: must be positive (seconds)")
        self.address, self.model_name, self.timeout = address, model_name, timeout
        self.version, self.label = parse_version(model_version)

    @property
    def model(self) -> str:
        if self.version is not None:
            return f"model {self.model_name} version {self.version}"
        if self.label:
            return f"model {self.model_name} version label {self.label}"
        return f"model {self.model_name}"

    @property
    def description(self) -> str:
        return f"{self.model} on the TF Serving {self.protocol} server {self.address}"

    def where(self, signature: str = "") -> str:
        return (f"{self.protocol} server {self.address}, {self.model}"
                + (f", signature {signature}" if signature else ""))

    def predict(self, signature: str, inputs: Dict[str, np.ndarray],
                only_output: str = "output") -> Dict[str, np.ndarray]:
        """The outputs of `signature` on `inputs` (`only_output`: the name of the output of a
        signature that has one, which TF Serving's REST API leaves unnamed)."""
        raise NotImplementedError

    def refused(self, signature: str, status: str, message: str) -> ServingError:
        """The error for the server's answer `status` / `message` to a request."""
        message = one_line(message)
        return ServingError(self.where(signature), status, message,
                            self.advice(signature, status, message))

    def unreachable(self, reason: str) -> ServingError:
        return ServingError(self.where(), "", f"cannot reach the server ({one_line(reason)})",
                            f"is tensorflow_model_server running there and listening with "
                            f"{self.port_flag}? (docker: -p {self.docker_port}:"
                            f"{self.docker_port})")

    def timed_out(self, signature: str) -> ServingError:
        return ServingError(self.where(signature), "DEADLINE_EXCEEDED" if self.protocol == "gRPC"
                            else "", f"no answer within --timeout={self.timeout:g} s",
                            "the server may still be loading the model, or be overloaded: "
                            "retry, or raise --timeout")

    def advice(self, signature: str, status: str, message: str) -> str:
        """What to do about the server's answer, read from TF Serving's messages."""
        if re.search(r"Servable not found|Could not find (any versions|version)|"
                     r"Unrecognized servable version label", message):
            return ("check --model_name and --model_version against the server's models.config "
                    "(model name, model_version_policy, version_labels)")
        if signature == METADATA_SIGNATURE and re.search(_NO_INPUTS, message):
            return (f"this export's `{METADATA_SIGNATURE}` signature has no input "
                    f"`{METADATA_INPUT}` (an export of an older aqa_tf): export the model again "
                    "with this version of aqa_tf (python -m aqa_tf.export), or give --metadata "
                    "<export>/assets.extra/aqa_tf.json")
        if re.search(r"signature (key|name)|Function \".*\" not found", message) and (
                "not found" in message):
            advice = (f"an aqa-tf export has the signatures {', '.join(EXPORT_SIGNATURES)} (and "
                      "<name>, <name>_jpeg of heads with signatures of their own, e.g. "
                      "caption): is "
                      f"--model_name={self.model_name} an export of `python -m aqa_tf.export`?")
            if signature == METADATA_SIGNATURE:
                advice += " Otherwise give --metadata <export>/assets.extra/aqa_tf.json"
            return advice
        if re.search(_INPUT_MISMATCH, message):
            return ("the request does not match the signature's inputs: the export and this "
                    "client disagree; export the model again with this version of aqa_tf "
                    "(python -m aqa_tf.export)")
        if re.search(r"image file format|JPEG|DecodeJpeg", message):
            return "a frame of the request is not a valid JPEG image"
        # The graph's own message (export_lib.NO_FRAMES), or an older export's gather error.
        if re.search(r"of 0 frames|is not in \[0, 0\)", message):
            return ("the request's window has no frames; the signatures need at least one "
                    "frame per window")
        if _QUEUE_FULL.search(message) or status in ("RESOURCE_EXHAUSTED", "HTTP 429"):
            return ("the server is overloaded (its batching queue, max_enqueued_batches, is "
                    "full) or the request is larger than it accepts: retry later")
        return ""


class GRPCConnection(Connection):
    """A model on a TF Serving gRPC server (`PredictionService.Predict`)."""

    protocol = "gRPC"
    port_flag = "--port"
    docker_port = 8500

    def __init__(self, address: str, model_name: str, model_version: str = "",
                 timeout: float = 60.0):
        if not re.fullmatch(r"[^/\s]+:\d+", address):
            raise ConfigError(f"--server={address}: expected HOST:PORT, e.g. localhost:8500")
        super().__init__(address, model_name, model_version, timeout)
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc
        # A window of 100 JPEG frames is ~1 MB; uint8 frames are far larger than gRPC's 4 MB
        # default (TF Serving itself accepts messages up to 2 GB).
        self._channel = grpc.insecure_channel(address, options=[
            ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def request(self, signature: str, inputs: Dict[str, np.ndarray]):
        """The `PredictRequest` of `signature` on numpy `inputs` (their dtypes kept: object
        arrays of bytes are DT_STRING)."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature
        if self.version is not None:
            request.model_spec.version.value = self.version
        elif self.label:
            request.model_spec.version_label = self.label
        for name, value in inputs.items():
            value = np.asarray(value)
            string = value.dtype == object or value.dtype.kind in "SU"
            request.inputs[name].CopyFrom(
                tf.make_tensor_proto(value, dtype=tf.string if string else None))
        return request

    def send(self, request) -> Dict[str, np.ndarray]:
        """Sends a `PredictRequest`; returns its outputs as numpy arrays."""
        import grpc
        import tensorflow as tf
        signature = request.model_spec.signature_name
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as error:
            code = error.code()
            # UNAVAILABLE is also TF Serving's answer when its batching queue is full.
            if code == grpc.StatusCode.UNAVAILABLE and not _QUEUE_FULL.search(
                    error.details() or ""):
                raise self.unreachable(error.details() or code.name) from error
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise self.timed_out(signature) from error
            raise self.refused(signature, code.name, error.details() or "") from error
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def predict(self, signature: str, inputs: Dict[str, np.ndarray],
                only_output: str = "output") -> Dict[str, np.ndarray]:
        del only_output  # gRPC names every output
        return self.send(self.request(signature, inputs))

    def close(self):
        self._channel.close()


def _map_leaves(value, fn):
    if isinstance(value, list):
        return [_map_leaves(v, fn) for v in value]
    return fn(value)


def to_json(array: np.ndarray):
    """A numpy input -> TF Serving's JSON: nested lists, strings as `{"b64": ...}` (JPEG bytes
    are not UTF-8)."""
    array = np.asarray(array)
    if array.dtype == object or array.dtype.kind in "SU":
        return _map_leaves(array.tolist(), lambda v: {"b64": base64.b64encode(
            v.encode("utf-8") if isinstance(v, str) else bytes(v)).decode("ascii")})
    return array.tolist()


def _first_leaf(value):
    while isinstance(value, list) and value:
        value = value[0]
    return value


def from_json(value) -> np.ndarray:
    """TF Serving's JSON of an output -> numpy: strings (plain, or `{"b64": ...}`) as an object
    array of bytes, numbers as float32 / int64."""
    def decode(leaf):
        if isinstance(leaf, dict):
            return base64.b64decode(leaf["b64"])
        return leaf.encode("utf-8") if isinstance(leaf, str) else leaf

    value = _map_leaves(value, decode)
    if isinstance(_first_leaf(value), bytes):
        return np.array(value, dtype=object)
    array = np.array(value)
    return array.astype(np.float32) if array.dtype.kind == "f" else array


def _rest_error_message(body: bytes) -> str:
    """The message of TF Serving's `{ "error": "..." }` body. TF Serving C-escapes the message
    (`\\'`, octal bytes), which is not always valid JSON: such bodies are unescaped by hand."""
    text = body.decode("utf-8", "replace")
    try:
        answer = json.loads(text)
        if isinstance(answer, dict) and "error" in answer:
            return str(answer["error"])
    except json.JSONDecodeError:
        match = re.fullmatch(r'\s*\{\s*"error"\s*:\s*"(.*)"\s*\}\s*', text, flags=re.S)
        if match:
            import codecs
            return codecs.escape_decode(match.group(1).encode("utf-8"))[0].decode(
                "utf-8", "replace")
    return text.strip()[:500] or "(empty answer)"


class RESTConnection(Connection):
    """A model on a TF Serving REST API (`POST /v1/models/<name>:predict`, columnar format)."""

    protocol = "REST"
    port_flag = "--rest_api_port"
    docker_port = 8501

    def __init__(self, url: str, model_name: str, model_version: str = "",
                 timeout: float = 60.0):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"--rest={url}: expected a URL http://HOST:PORT, e.g. "
                              "http://localhost:8501")
        super().__init__(url.rstrip("/"), model_name, model_version, timeout)

    @property
    def url(self) -> str:
        """`.../v1/models/<name>[/versions/<n> | /labels/<label>]:predict`."""
        path = f"/v1/models/{urllib.parse.quote(self.model_name, safe='')}"
        if self.version is not None:
            path += f"/versions/{self.version}"
        elif self.label:
            path += f"/labels/{urllib.parse.quote(self.label, safe='')}"
        return f"{self.address}{path}:predict"

    def body(self, signature: str, inputs: Dict[str, np.ndarray]) -> Dict:
        """The JSON request of `signature` on numpy `inputs` (columnar: `"inputs"`)."""
        return {"signature_name": signature,
                "inputs": {name: to_json(value) for name, value in inputs.items()}}

    def send(self, body: Dict, only_output: str = "output") -> Dict[str, np.ndarray]:
        """POSTs a JSON request; returns its outputs as numpy arrays."""
        signature = body.get("signature_name", contract.SCORE_SIGNATURE)
        request = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"),
                                         headers={"Content-Type": "application/json"},
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                text = reply.read()
        except urllib.error.HTTPError as error:
            raise self.refused(signature, f"HTTP {error.code}",
                               _rest_error_message(error.read())) from error
        except urllib.error.URLError as error:
            if isinstance(error.reason, (TimeoutError, socket.timeout)):
                raise self.timed_out(signature) from error
            raise self.unreachable(str(error.reason)) from error
        except (TimeoutError, socket.timeout) as error:
            raise self.timed_out(signature) from error
        except ConnectionError as error:
            raise self.unreachable(str(error)) from error
        try:
            answer = json.loads(text)
        except json.JSONDecodeError as error:
            raise ServingError(self.where(signature), "", "the answer is not JSON: "
                               f"{one_line(text.decode('utf-8', 'replace'))[:200]}",
                               "is --rest the URL of TF Serving's REST API?") from error
        if not isinstance(answer, dict) or "outputs" not in answer:
            raise ServingError(self.where(signature), "", "the answer has no \"outputs\": "
                               f"{one_line(str(answer))[:200]}",
                               "is --rest the URL of TF Serving's REST API?")
        outputs = answer["outputs"]
        # TF Serving leaves the output of a one-output signature unnamed.
        if not isinstance(outputs, dict) or set(outputs) == {"b64"}:
            outputs = {only_output: outputs}
        return {name: from_json(value) for name, value in outputs.items()}

    def predict(self, signature: str, inputs: Dict[str, np.ndarray],
                only_output: str = "output") -> Dict[str, np.ndarray]:
        return self.send(self.body(signature, inputs), only_output)

    def close(self):
        pass


def connect(server: str = "", rest: str = "", model_name: str = "quickstart",
            model_version: str = "", timeout: float = 60.0) -> Connection:
    """A gRPC (`server`, HOST:PORT) or REST (`rest`, http://HOST:PORT) connection: exactly one
    of them."""
    if bool(server) == bool(rest):
        raise ConfigError("give exactly one of --server=HOST:PORT (gRPC, e.g. localhost:8500) "
                          "and --rest=http://HOST:PORT (REST, e.g. http://localhost:8501)")
    if server:
        return GRPCConnection(server, model_name, model_version, timeout)
    return RESTConnection(rest, model_name, model_version, timeout)


def _checked_metadata(meta, source: str) -> Dict:
    if not isinstance(meta, dict):
        raise ConfigError(f"{source}: not an aqa-tf metadata file (aqa_tf.json): no JSON object")
    missing = [key for key in REQUIRED_METADATA if key not in meta]
    if missing:
        raise ConfigError(f"{source}: not an aqa-tf metadata file (aqa_tf.json): no "
                          f"{', '.join(missing)}")
    return meta


def read_metadata(path: str) -> Dict:
    """An export's `assets.extra/aqa_tf.json`."""
    if os.path.isdir(path):
        path = os.path.join(path, contract.ASSETS_EXTRA, contract.METADATA_FILE)
    with open(path, encoding="utf-8") as f:  # FileNotFoundError: one line from flag_defs.run
        try:
            meta = json.load(f)
        except json.JSONDecodeError as error:
            raise ConfigError(f"--metadata={path}: not JSON ({error})") from error
    return _checked_metadata(meta, f"--metadata={path}")


def fetch_metadata(connection: Connection) -> Dict:
    """The export's `aqa_tf.json`, from its `metadata` signature (input `batch`, int32 `[batch]`,
    ignored; output `json`, string `[batch]`, each element the text of `aqa_tf.json`)."""
    outputs = connection.predict(METADATA_SIGNATURE,
                                 {METADATA_INPUT: np.zeros([1], np.int32)},
                                 only_output=contract.METADATA_OUTPUT)
    where = connection.where(METADATA_SIGNATURE)
    texts = np.asarray(outputs.get(contract.METADATA_OUTPUT, [])).reshape(-1)
    if contract.METADATA_OUTPUT not in outputs or not texts.size:
        raise ServingError(where, "", f"the answer has no json text (outputs: "
                           f"{sorted(outputs)})", "give --metadata "
                           "<export>/assets.extra/aqa_tf.json")
    text = texts[0]
    try:
        meta = json.loads(text.decode("utf-8") if isinstance(text, bytes) else str(text))
    except json.JSONDecodeError as error:
        raise ServingError(where, "", f"the answer is not JSON ({error})",
                           "give --metadata <export>/assets.extra/aqa_tf.json") from error
    return _checked_metadata(meta, where)


def serving_scorer(connection: Connection, meta: Optional[Dict] = None):
    """A `scorer.Scorer` whose model is `connection`'s: JPEG windows go to `serving_jpeg`
    and the heads' `<name>_jpeg` signatures (e.g. `caption_jpeg`), uint8 windows (models that
    record no JPEG quality) to `serving_default` and `<name>`.

    Args:
      connection: the server and model.
      meta: the export's `aqa_tf.json` (`read_metadata`); None: asked from the server
        (`fetch_metadata`).
    """
    meta = fetch_metadata(connection) if meta is None else meta

    def serve(windows, difficulty, action=None, dive_number=None):
        extra = {} if action is None else {"action": np.asarray(action, np.int32)}
        if dive_number is not None:  # CoRe exports: the dive type their bank is looked up by
            extra["dive_number"] = np.asarray(dive_number, object)
        difficulty = np.asarray(difficulty, np.float32)
        if np.asarray(windows).dtype == object:
            signature = contract.SCORE_JPEG_SIGNATURE
            return connection.predict(signature, {
                "frames": windows,
                "difficulty": difficulty, **extra})
        signature = contract.SCORE_SIGNATURE
        return connection.predict(signature, {
            "video": windows,
            "difficulty": difficulty, **extra})

    def generator(name):
        def generate(windows):
            if np.asarray(windows).dtype == object:
                signature = name + contract.JPEG_SUFFIX
                return connection.predict(signature, {
                    "frames": windows})
            return connection.predict(name, {
                "video": windows})
        return generate

    generators = {name: generator(name) for name in contract.head_signatures(meta)}
    return Scorer(serve, generators, meta, connection.description)

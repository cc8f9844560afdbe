"""The serving boundary under load (issue 24): 200 requests from 8 threads, good and bad mixed,
to the gRPC and REST stand-ins of TF Serving (tests/tf_serving_standin.py) over localhost,
through one shared client per protocol. Every good request gets the score it gets alone, every
bad one its own clear refusal; the process (server and clients) stays under a memory bound, and
the servers still answer afterwards. The figures (requests/s, peak RSS) are printed: see
docs/errors.md for those measured.

What the stand-ins do not show: a real server's own limits (TF Serving's request batching,
its thread pools, `--rest_api_num_threads`); see tests/tf_serving_standin.py."""

import re
import threading
import time
from concurrent import futures

import numpy as np
import pytest

from tests.predict_test import dive_frames, quickstart_model
from tests.serving_test import MODEL

REQUESTS, THREADS = 200, 8
# Peak resident memory of the whole test process (both servers, both clients, the model)
# over what it held before the load: measured +0.81 GB (docs/errors.md); the 4000x4000
# frames are 46 MB each as uint8, 183 MB as float32 in the graph's resize.
MAX_GROWTH_GB = 2.0


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """The quickstart model (score and dive heads, random weights) exported in-process: the
    signatures the load calls (`serving_default`, `serving_jpeg`) and `metadata`, as in
    tests/serving_test.py's export, less its commentary signatures, which no request here
    calls (about 6 s of tracing saved), and its other models."""
    from aqa_tf.serving import export_lib
    model, data_config = quickstart_model()
    folder = tmp_path_factory.mktemp("saved_models")
    return export_lib.export_saved_model(model, data_config, str(folder / MODEL / "1"))


@pytest.fixture(scope="module")
def servers(export):
    """Both stand-ins, serving `export` as `quickstart` version 1."""
    from tests.tf_serving_standin import TFServingStandin
    with TFServingStandin({MODEL: {1: export}}) as standin:
        yield standin


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


class PeakMemory:
    """The process's peak resident set during a block: VmHWM after resetting it
    (/proc/self/clear_refs), or, where that is not allowed, sampled every 5 ms."""

    def __enter__(self):
        self.before = _rss_kib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self._sampled = False
        except OSError:
            self._sampled = True
        self.peak, self._done = self.before, threading.Event()
        if self._sampled:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._done.wait(0.005):
            self.peak = max(self.peak, _rss_kib("VmRSS"))

    def __exit__(self, *exc):
        self._done.set()
        if self._sampled:
            self._thread.join()
        else:
            self.peak = _rss_kib("VmHWM")


def _requests(meta):
    """Kinds of request: (name, signature, inputs, expected refusal or None)."""
    from aqa_tf.serving.scorer import Scorer
    window = dive_frames(64, 86)[-meta["window_length"]:]
    jpegs = Scorer(None, None, meta, "").model_frames(window)[None]
    big = np.repeat(np.repeat(dive_frames(80, 80)[-1:], 50, axis=1), 50, axis=2)  # 4000x4000
    corrupt = jpegs.copy()
    corrupt[0, 3] = b"\xff\xd8 not a JPEG"
    one = np.ones([1], np.float32)
    return {
        "jpeg": ("serving_jpeg", {"frames": jpegs, "difficulty": one}, None),
        "uint8": ("serving_default", {"video": window[None], "difficulty": one}, None),
        "short": ("serving_default", {"video": window[None, -5:], "difficulty": one}, None),
        "4000x4000": ("serving_default", {"video": big[None], "difficulty": one}, None),
        "corrupt JPEG": ("serving_jpeg", {"frames": corrupt, "difficulty": one},
                         r"JPEG|image"),
        "wrong dtype": ("serving_jpeg", {"frames": jpegs, "difficulty": np.ones([1])},
                        r"to be float but double is provided|is not of expected type"),
        "0 frames": ("serving_default", {"video": window[None, :0], "difficulty": one},
                     r"input `(video|frames)`: a video of 0 frames"),
    }


def test_200_mixed_requests_from_8_threads(export, servers):
    from aqa_tf.serving import client as serving_client
    meta = serving_client.read_metadata(export)
    clients = {"gRPC": serving_client.connect(server=servers.grpc_address, model_name=MODEL),
               "REST": serving_client.connect(rest=servers.rest_url, model_name=MODEL)}
    kinds = _requests(meta)
    # Over REST a 4000x4000 uint8 frame is 48 M JSON numbers (TF Serving's REST API is not
    # for raw frames); it goes as one JPEG to serving_jpeg there, as a REST client sends it.
    from aqa_tf.data import features
    big_jpeg = np.array([[features.encode_jpeg(kinds["4000x4000"][1]["video"][0, 0], 90)]],
                        object)
    rest_big = ("serving_jpeg", {"frames": big_jpeg, "difficulty": np.ones([1], np.float32)},
                None)
    rest_wrong = ("serving_jpeg", {"frames": kinds["jpeg"][1]["frames"],
                                   "difficulty": np.array(["hard"], object)},
                  kinds["wrong dtype"][2])
    # (JSON keeps no shape for an empty uint8 video: 0 frames go as an empty JPEG list.)
    rest_empty = ("serving_jpeg", {"frames": np.empty([1, 0], object),
                                   "difficulty": np.ones([1], np.float32)},
                  kinds["0 frames"][2])

    def request(protocol, kind):
        if protocol == "REST" and kind == "4000x4000":
            return rest_big
        if protocol == "REST" and kind == "wrong dtype":
            return rest_wrong
        if protocol == "REST" and kind == "0 frames":
            return rest_empty
        return kinds[kind]

    def send(protocol, kind):
        signature, inputs, refusal = request(protocol, kind)
        try:
            return clients[protocol].predict(signature, inputs)["score"][0], None
        except serving_client.ServingError as error:
            return None, error

    alone = {(p, k): send(p, k)[0] for p in clients for k in kinds if request(p, k)[2] is None}
    for key, score in alone.items():
        assert score is not None, key
    plan = [(("gRPC", "REST")[i % 2], list(kinds)[(i // 2) % len(kinds)])
            for i in range(REQUESTS)]
    start = time.perf_counter()
    with PeakMemory() as memory, futures.ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(lambda job: send(*job), plan))
    seconds = time.perf_counter() - start
    refused = 0
    for (protocol, kind), (score, error) in zip(plan, answers):
        expected = request(protocol, kind)[2]
        if expected is None:
            assert error is None, (protocol, kind, str(error))
            assert score == pytest.approx(alone[protocol, kind], abs=1e-5), (protocol, kind)
        else:
            refused += 1
            assert error is not None, (protocol, kind)
            line = f"error: {error}"
            assert "\n" not in line and "Traceback" not in line
            assert error.status in ("INVALID_ARGUMENT", "HTTP 400"), (protocol, kind, line)
            assert re.search(expected, error.message), (protocol, kind, line)
    growth_gb = (memory.peak - memory.before) / 2**20
    print(f"{REQUESTS} requests from {THREADS} threads ({refused} refused as expected) in "
          f"{seconds:.1f} s: {REQUESTS / seconds:.1f} requests/s; peak RSS "
          f"{memory.peak / 2**20:.2f} GB ({growth_gb:+.2f} GB over "
          f"{memory.before / 2**20:.2f} GB before){' (sampled)' if memory._sampled else ''}")
    assert refused == sum(request(*job)[2] is not None for job in plan) > 0
    assert growth_gb < MAX_GROWTH_GB
    # Still answering, with the same scores.
    for protocol in clients:
        assert send(protocol, "jpeg")[0] == pytest.approx(alone[protocol, "jpeg"], abs=1e-5)

"""What many tests need: running a command line of the project, reading its one-line error,
free ports for servers, and the backbones a per-backbone test runs."""

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from typing import List, Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The deeper depths of a backbone family (resnet3d_34/101, r2plus1d_34) are more of the same
# blocks, with the same operators, as a sibling that the per-backbone tests keep: basic blocks
# resnet3d_18 and r2plus1d_18, bottlenecks resnet3d_50 and r2plus1d_50, torchvision's R(2+1)D
# r2plus1d_34_ig65m. configs_test trains a step of the first and runs the others forward; tests
# of operators and dtypes (TFLite conversion, mixed precision) run one backbone per module
# (`backbone_per_module`); the weight-import parity tests build every depth.
REPEATED_DEPTHS = ("resnet3d_34", "resnet3d_101", "r2plus1d_34")


def backbone_per_module() -> List[str]:
    """One registered backbone of each backbone module (the first, shallowest, name it declares
    in `registry.BACKBONES`): for the checks that depend on which layer classes and operators a
    network is made of (TFLite's builtin operators, the dtype handling of mixed precision),
    which the other names of a module share: other depths, bottleneck blocks (more 1x1x1
    Conv3D) and the IG-65M stem (other kernel sizes) of the same layer classes."""
    from aqa_tf import registry
    first = {}
    for name, module in registry.BACKBONES.declared.items():
        first.setdefault(module, name)
    return sorted(first.values())


class _CommandServer:
    """This test process's `tests.command_server`: started on first use, ended with the
    process (or when this process's end closes its stdin). Several of its commands may run at
    once (`start_module`)."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.command_server"],
                                     cwd=REPO_ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, bufsize=1)
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError("tests.command_server did not start: run `python -m "
                               "tests.command_server` to see why")
        self.environ = json.loads(ready)["env"]
        self.lock = threading.Lock()  # one request written at a time
        self.commands = {}  # id -> the `ServedCommand` it answers
        self.next_id = 0
        threading.Thread(target=self._read_answers, daemon=True).start()
        atexit.register(self.close)

    def serves(self, env=None) -> bool:
        """Whether the variables that libraries read as they load, where `env` (default: this
        process's environment) sets them, have the server's values."""
        env = os.environ if env is None else env
        return all(env[name] == self.environ.get(name)
                   for name in IMPORT_TIME_VARIABLES if name in env)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)

    def _read_answers(self):
        for line in self.proc.stdout:
            answer = json.loads(line)
            command = self.commands[answer["id"]]
            if "returncode" in answer:
                del self.commands[answer["id"]]
            command.answered(answer)
        for command in list(self.commands.values()):  # the server has ended
            command.answered({"returncode": None})

    def start(self, module: str, args, cwd: str, env, stdout: str, stderr: str
              ) -> "ServedCommand":
        with self.lock:
            self.next_id += 1
            command = self.commands[self.next_id] = ServedCommand(
                [sys.executable, "-m", module, *args], stdout, stderr)
            self.proc.stdin.write(json.dumps({"id": self.next_id, "module": module,
                                              "args": list(args), "cwd": os.path.abspath(cwd),
                                              "env": dict(env), "stdout": stdout,
                                              "stderr": stderr}) + "\n")
            self.proc.stdin.flush()
        command.started.wait()
        if command.pid is None:
            raise RuntimeError("tests.command_server ended: run `python -m "
                               "tests.command_server` to see why")
        return command


class ServedCommand:
    """A command that `tests.command_server` runs, as `subprocess.Popen` gives it: `pid`,
    `poll()`, `wait()`, `send_signal()`, `kill()`, `returncode`."""

    def __init__(self, args, stdout: str, stderr: str):
        self.args, self.stdout_path, self.stderr_path = args, stdout, stderr
        self.pid = self.returncode = None
        self.started, self.ended = threading.Event(), threading.Event()

    def answered(self, answer: dict):
        if "pid" in answer:
            self.pid = answer["pid"]
            self.started.set()
            return
        if answer["returncode"] is None:  # the server has ended (it kills its children)
            answer = {"returncode": -signal.SIGKILL}
        self.returncode = answer["returncode"]
        self.started.set()
        self.ended.set()

    def poll(self):
        return self.returncode

    def wait(self, timeout=None) -> int:
        if not self.ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, sig):
        if not self.ended.is_set():  # its pid is not reused before the server has reaped it
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:  # it had just ended
                pass

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def output(self):
        """(stdout, stderr) as text, from the files they were written to."""
        texts = []
        for path in (self.stdout_path, self.stderr_path):
            with open(path, errors="replace") as f:
                texts.append(f.read())
        return tuple(texts)


_SERVER: List[_CommandServer] = []
# Read by Keras or TensorFlow when they load: a command whose value differs from the command
# server's runs in a new interpreter.
IMPORT_TIME_VARIABLES = ("KERAS_BACKEND", "TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL",
                         "CUDA_VISIBLE_DEVICES", "TF_USE_LEGACY_KERAS")


def _server(env, fresh: bool):
    """The command server, where it can run a command with environment `env`; else None."""
    if fresh or os.environ.get("AQA_TF_TEST_FRESH_PROCESSES"):
        return None
    if not _SERVER:
        _SERVER.append(_CommandServer())
    return _SERVER[0] if _SERVER[0].serves(env) else None


def start_module(module: str, *args: str, log: str, stderr_log: Optional[str] = None,
                 cwd: str = REPO_ROOT, env=None, fresh: bool = False):
    """`python -m module args...` started (as `subprocess.Popen` starts it), its stdout and
    stderr written to the file `log` (stderr to `stderr_log` where given): a child of
    `tests.command_server` (see `run_module`), a `ServedCommand`, where `env` (default: this
    process's environment, which the command gets) keeps the server's `IMPORT_TIME_VARIABLES`;
    otherwise, or where `fresh` asks for it, a new interpreter (a `subprocess.Popen`). Several
    may run at once; the test kills what it leaves running."""
    env = dict(os.environ) if env is None else env
    server = _server(env, fresh)
    if server is not None:
        return server.start(module, args, cwd, env, log, stderr_log or log)
    with contextlib.ExitStack() as files:
        out = files.enter_context(open(log, "w"))
        err = files.enter_context(open(stderr_log, "w")) if stderr_log else subprocess.STDOUT
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, stdout=out,
                                stderr=err, env=env)


def run_module(module: str, *args: str, timeout: int = 600, cwd: str = REPO_ROOT,
               env=None, fresh: bool = False) -> subprocess.CompletedProcess:
    """`python -m module args...` (output captured as text), as a user runs it: in a process
    of its own, `__main__`, its argv, working directory, output and exit status.

    It runs in a child forked from `tests.command_server`, which has TensorFlow and Keras
    imported already (about 6 s saved per command on the 2-core machines), with this
    process's environment; a new interpreter where `fresh` or `env` ask for one, or where
    this process has changed a variable that the libraries read as they load
    (`IMPORT_TIME_VARIABLES`). $AQA_TF_TEST_FRESH_PROCESSES=1: always a new interpreter."""
    server = None if env is not None else _server(os.environ, fresh)
    if server is None:
        return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, env=env)
    with tempfile.TemporaryDirectory(prefix="aqa_tf_command_") as folder:
        command = server.start(module, args, cwd, os.environ, os.path.join(folder, "stdout"),
                               os.path.join(folder, "stderr"))
        try:
            command.wait(timeout)
        except subprocess.TimeoutExpired:
            command.kill()
            command.wait()
            raise subprocess.TimeoutExpired(command.args, timeout, *command.output())
        return subprocess.CompletedProcess(command.args, command.returncode, *command.output())


def run_cli(module: str, *args: str, expect: int = 0, timeout: int = 600
            ) -> subprocess.CompletedProcess:
    """`run_module`, asserting its exit status (`expect`) and showing its output otherwise."""
    proc = run_module(module, *args, timeout=timeout)
    assert proc.returncode == expect, f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


def error_line(stderr: str, *names: str) -> str:
    """The one `error: ...` line a user's mistake gives (the last line of stderr, no
    traceback), which must name each of `names`."""
    assert "Traceback" not in stderr and "FATAL" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and stderr.strip().splitlines()[-1] == lines[0], stderr[-3000:]
    assert all(name in lines[0] for name in names), lines[0]
    return lines[0]


def user_error(proc: subprocess.CompletedProcess, *names: str) -> str:
    """A command that ended on a user's mistake: exit status 2 and one `error_line`."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    return error_line(proc.stderr, *names)


def shard_records(out_dir: str) -> dict:
    """sample key -> (split, parsed record) of every record of every shard under `out_dir`
    (`<split>-*.tfrecord`, or `<Task>/<fold>-*.tfrecord`: the split is then `<Task>/<fold>`),
    each key once."""
    import glob
    import tensorflow as tf
    from aqa_tf.data import features
    records = {}
    paths = glob.glob(os.path.join(out_dir, "*.tfrecord")) + glob.glob(
        os.path.join(out_dir, "*", "*.tfrecord"))
    for path in sorted(paths):
        rel = os.path.relpath(path, out_dir)
        split = os.path.join(os.path.dirname(rel), os.path.basename(rel).split("-")[0])
        for serialized in tf.data.TFRecordDataset(path):
            record = features.parse_to_numpy(serialized.numpy())
            assert record["sample_key"] not in records, f"{record['sample_key']} twice"
            records[record["sample_key"]] = split, record
    return records


def assert_same_records(expected_dir: str, got_dir: str) -> dict:
    """Asserts that two converters' outputs hold the same records (`shard_records`), every
    field equal (the JPEG bytes of every frame included), each in the same split; returns the
    expected ones."""
    import numpy as np
    from aqa_tf.data import features
    expected, got = shard_records(expected_dir), shard_records(got_dir)
    assert sorted(got) == sorted(expected)
    for key, (split, record) in expected.items():
        other_split, other = got[key]
        assert other_split == split, key
        assert sorted(other) == sorted(record), key
        for name, value in record.items():
            if name == features.FRAMES:  # the JPEG bytes of every frame
                assert len(other[name]) == len(value), key
                assert all(a == b for a, b in zip(value, other[name])), key
            else:
                np.testing.assert_array_equal(np.asarray(other[name]), np.asarray(value),
                                              err_msg=f"{key} {name}")
    return expected


def synthetic_sample(split: str, index: int, num_frames: int, height: int, width: int,
                     seed: int = 0):
    """`synthetic.make_sample` at `height` x `width`; from 720 rows up, a render at half the
    size scaled up 2x (`video.resize_frame`: OpenCV, bilinear): the renderer draws every pixel
    of every frame in numpy, about 12 s per 54-frame 1280x720 video on the 2-core machines,
    1.3 s at 640x360. The labels and the annotated end do not depend on the size."""
    import dataclasses

    import numpy as np
    from aqa_tf.data import synthetic
    scale = 2 if height >= 720 else 1
    sample = synthetic.make_sample(split, index, seed, num_frames, height // scale,
                                   width // scale)
    if scale == 1:
        return sample
    from aqa_tf.data import video
    frames = np.stack([video.resize_frame(f, width, height) for f in sample.frames])
    return dataclasses.replace(sample, frames=frames)


def free_ports(count: int) -> List[int]:
    """`count` distinct TCP ports free on localhost now (all bound at once, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def free_port() -> int:
    return free_ports(1)[0]


def authors_repository(repo: str, env: str) -> str:
    """Where the authors' repository `repo` ("owner/name") is looked for: $`env` (a checkout or
    its git directory), else the local mirror of this project's machines
    (`../.mirror/<owner>+<name>/repo`)."""
    mirror = os.path.join(os.path.dirname(REPO_ROOT), ".mirror", repo.replace("/", "+"), "repo")
    return os.environ.get(env, mirror)


def authors_module(tmp_path_factory, repo: str, path: str, env: str, fallback: str):
    """An authors' PyTorch file (`path` in the GitHub repository `repo`, e.g.
    "piergiaj/pytorch-i3d"), imported from a temporary copy. It is read from $`env` (the file,
    a checkout or a git directory of `repo`), else from the local mirror of this project's
    machines (`../.mirror/<owner>+<name>/repo`); without it the test is skipped, saying how to
    point at it and what still runs (`fallback`)."""
    import importlib.util

    import pytest
    where = authors_repository(repo, env)
    text = None
    for candidate in (os.path.join(where, path), os.path.join(where, os.path.basename(path)),
                      where):
        if os.path.isfile(candidate):
            with open(candidate) as f:
                text = f.read()
            break
    for git_dir in (os.path.join(where, ".git"), where):  # a checkout's or a bare one
        if text is not None or not os.path.isdir(git_dir):
            continue
        try:
            proc = subprocess.run(["git", "--git-dir", git_dir, "show", f"HEAD:{path}"],
                                  capture_output=True, text=True, timeout=60)
        except OSError:
            break
        if proc.returncode == 0:
            text = proc.stdout
    if text is None:
        pytest.skip(f"{repo}'s {path} is not on this machine (set {env} to the file, a "
                    f"checkout or its git directory); {fallback}")
    name = os.path.splitext(os.path.basename(path))[0]
    copy = tmp_path_factory.mktemp(name) / os.path.basename(path)
    copy.write_text(text)
    spec = importlib.util.spec_from_file_location(name, str(copy))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

"""What many tests need: running a command line of the project, reading its one-line error,
free ports for servers, and the backbones a per-backbone test runs."""

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from typing import List

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
    process (or when this process's end closes its stdin)."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.command_server"],
                                     cwd=REPO_ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, bufsize=1)
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError("tests.command_server did not start: run `python -m "
                               "tests.command_server` to see why")
        self.lock = threading.Lock()
        self.environ = json.loads(ready)["env"]
        atexit.register(self.close)

    def serves(self) -> bool:
        """Whether the variables that libraries read as they load, where this process sets
        them, have the server's values."""
        return all(os.environ[name] == self.environ.get(name)
                   for name in IMPORT_TIME_VARIABLES if name in os.environ)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)

    def run(self, module: str, args, cwd: str, timeout: float) -> subprocess.CompletedProcess:
        with self.lock, tempfile.TemporaryDirectory(prefix="aqa_tf_command_") as folder:
            out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
            self.proc.stdin.write(json.dumps({"module": module, "args": list(args),
                                              "cwd": os.path.abspath(cwd),
                                              "env": dict(os.environ), "stdout": out,
                                              "stderr": err}) + "\n")
            self.proc.stdin.flush()
            pid = json.loads(self.proc.stdout.readline())["pid"]
            expired = threading.Event()

            def kill():  # at the timeout (the server then reports the signal)
                expired.set()
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # it had just ended
                    pass
            timer = threading.Timer(timeout, kill)
            timer.start()
            try:
                code = json.loads(self.proc.stdout.readline())["returncode"]
            finally:
                timer.cancel()
            timed_out = expired.is_set()
            with open(out, errors="replace") as f:
                stdout = f.read()
            with open(err, errors="replace") as f:
                stderr = f.read()
        command = [sys.executable, "-m", module, *args]
        if timed_out:
            raise subprocess.TimeoutExpired(command, timeout, stdout, stderr)
        return subprocess.CompletedProcess(command, code, stdout, stderr)


_SERVER: List[_CommandServer] = []
# Read by Keras or TensorFlow when they load: a command whose value differs from the command
# server's runs in a new interpreter.
IMPORT_TIME_VARIABLES = ("KERAS_BACKEND", "TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL",
                         "CUDA_VISIBLE_DEVICES", "TF_USE_LEGACY_KERAS")


def run_module(module: str, *args: str, timeout: int = 600, cwd: str = REPO_ROOT,
               env=None, fresh: bool = False) -> subprocess.CompletedProcess:
    """`python -m module args...` (output captured as text), as a user runs it: in a process
    of its own, `__main__`, its argv, working directory, output and exit status.

    It runs in a child forked from `tests.command_server`, which has TensorFlow and Keras
    imported already (about 6 s saved per command on the 2-core machines), with this
    process's environment; a new interpreter where `fresh` or `env` ask for one, or where
    this process has changed a variable that the libraries read as they load
    (`IMPORT_TIME_VARIABLES`). $AQA_TF_TEST_FRESH_PROCESSES=1: always a new interpreter."""
    if not (fresh or env is not None or os.environ.get("AQA_TF_TEST_FRESH_PROCESSES")):
        if not _SERVER:
            _SERVER.append(_CommandServer())
        if _SERVER[0].serves():
            return _SERVER[0].run(module, args, cwd, timeout)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


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


def authors_module(tmp_path_factory, repo: str, path: str, env: str, fallback: str):
    """An authors' PyTorch file (`path` in the GitHub repository `repo`, e.g.
    "piergiaj/pytorch-i3d"), imported from a temporary copy. It is read from $`env` (the file,
    a checkout or a git directory of `repo`), else from the local mirror of this project's
    machines (`../.mirror/<owner>+<name>/repo`); without it the test is skipped, saying how to
    point at it and what still runs (`fallback`)."""
    import importlib.util

    import pytest
    mirror = os.path.join(os.path.dirname(REPO_ROOT), ".mirror", repo.replace("/", "+"), "repo")
    where = os.environ.get(env, mirror)
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

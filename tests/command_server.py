"""A process that has the project's heavy libraries imported and runs `python -m MODULE ARGS`
commands for the tests in forked children (`tests.helpers.run_module`).

A command of the project imports TensorFlow and Keras, about 6 s of one core on the 2-core
machines; the suite runs about a hundred of them. Here they are imported once per test worker;
each command is then a fork of this process that runs the module as `__main__`, with its own
argv, working directory, stdout, stderr and exit status, as `python -m` runs it. Only
third-party libraries are imported beforehand (and `aqa_tf/__init__.py`, which sets
TensorFlow's environment before TensorFlow loads, as every command does): the project's own
modules load in the child, as in a fresh process. Tests of what a command imports (that flags
are parsed before TensorFlow loads) start plain processes instead.

Protocol, one JSON object a line: this process says `{"ready": pid, "env": its environment}`
once it has imported its libraries; then the test writes `{"id", "module", "args", "cwd", "env",
"stdout", "stderr"}` (the last two: files for the child's output, the same file for both where
they are to be merged, as `stderr=subprocess.STDOUT` does) on stdin; this process answers
`{"id", "pid"}` once the child runs and `{"id", "returncode"}` when it has ended (minus the
signal number if a signal ended it, as `subprocess` reports). Several commands may run at once
(a test that starts two trainings side by side, or a cluster of workers); the answers of one
command come in order, those of different commands interleaved. At the end of its stdin it kills
the children still running (their test process has ended) and ends.
"""

import atexit
import json
import os
import runpy
import signal
import sys
import tempfile
import threading
import traceback

# The answers go to a copy of stdout; stdout itself goes nowhere until a child sets it.
_CONTROL = os.dup(1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)

import aqa_tf  # noqa: E402,F401  (TensorFlow's environment, as every command sets it first)
import keras  # noqa: E402,F401
import numpy  # noqa: E402,F401
import tensorflow  # noqa: E402,F401


def _exit_code(code) -> int:
    """The exit status of `sys.exit(code)`, as the interpreter computes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _run_child(request: dict):
    """In the forked child: the command, then the interpreter's own exit steps."""
    os.close(_CONTROL)
    os.environ.clear()
    os.environ.update(request["env"])
    # The temporary folder as a new interpreter finds it ($TMPDIR...): `tempfile` remembers
    # the one it found here, under this process's environment.
    tempfile.tempdir = None
    os.chdir(request["cwd"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    opened = {}
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        if path not in opened:  # one file for both: one descriptor, as stderr=STDOUT gives
            opened[path] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(opened[path], fd)
    for out in opened.values():
        os.close(out)
    sys.path[0] = request["cwd"]  # as `python -m` puts the working directory first
    sys.argv = ["-m", *request["args"]]  # runpy sets argv[0] to the module's file
    code = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as error:
        code = _exit_code(error.code)
    except BaseException:  # noqa: BLE001  (the interpreter prints any uncaught exception)
        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()  # the interpreter waits for non-daemon threads at exit
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main():
    control_in = sys.stdin
    control_out = os.fdopen(_CONTROL, "w", closefd=False)
    answering = threading.Lock()
    running = {}  # pid -> the thread that waits for it

    def answer(message: dict):
        with answering:
            print(json.dumps(message), file=control_out, flush=True)

    def wait_for(command_id, pid):
        _, status = os.waitpid(pid, 0)
        code = (-os.WTERMSIG(status) if os.WIFSIGNALED(status)
                else os.WEXITSTATUS(status))
        answer({"id": command_id, "returncode": code})
        running.pop(pid, None)

    answer({"ready": os.getpid(), "env": dict(os.environ)})
    for line in control_in:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        # The child needs none of this process's threads (each only waits for a child of its
        # own): it runs the command in the thread that forked it, as a new interpreter would.
        pid = os.fork()
        if pid == 0:
            _run_child(request)
        answer({"id": request["id"], "pid": pid})
        running[pid] = threading.Thread(target=wait_for, args=(request["id"], pid),
                                        daemon=True)
        running[pid].start()
    for pid, waiter in list(running.items()):  # the tests that started them have ended
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        waiter.join(timeout=10)


if __name__ == "__main__":
    main()

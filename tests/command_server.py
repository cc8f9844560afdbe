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
once it has imported its libraries; then the test writes `{"module", "args", "cwd", "env",
"stdout", "stderr"}` (the last two: files for the child's output) on stdin; this process answers
`{"pid": ...}` once the child runs and `{"returncode": ...}` when it has ended (minus the
signal number if a signal ended it, as `subprocess` reports). It ends at the end of its stdin.
"""

import atexit
import json
import os
import runpy
import sys
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
    os.chdir(request["cwd"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, fd)
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
    print(json.dumps({"ready": os.getpid(), "env": dict(os.environ)}), file=control_out,
          flush=True)
    for line in control_in:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(request)
        print(json.dumps({"pid": pid}), file=control_out, flush=True)
        _, status = os.waitpid(pid, 0)
        code = (-os.WTERMSIG(status) if os.WIFSIGNALED(status)
                else os.WEXITSTATUS(status))
        print(json.dumps({"returncode": code}), file=control_out, flush=True)


if __name__ == "__main__":
    main()

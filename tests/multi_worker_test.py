"""Training on a cluster of two workers (`--distribution=multi_worker`, two processes of
`python -m aqa_tf.train` on localhost, each with its TF_CONFIG): the same losses as one worker,
only the chief writes the run folder, and a run whose worker is killed resumes from the backup.

The comparison is exact up to float rounding because every epoch trains on the same global
batch: one batch of all 16 training samples (so the order in which the input pipeline reads
them does not matter), without augmentation (no window jitter, no flips: what a sample looks
like does not depend on the epoch or on the order either), without dropout and BatchNorm (whose
results depend on how the batch is split across replicas). The loss of epoch `e` is then that
of the weights after `e - 1` all-reduced Adam steps on the whole set: epoch 1 checks the
splitting of the batch and the averaging of the loss across workers; epoch 2, trained after the
kill, the all-reduced gradients of epoch 1 and the weights, optimizer state and learning-rate
schedule restored from the backup. The training split has two shards: a cluster that shards
its input by file (each worker reading one) would never fill a batch of 16.
"""

import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import synthetic_records
from tests.helpers import free_ports, start_module

NUM_TRAIN = 16
EPOCHS = 2
# Each worker computes the loss and the gradients of its 8 samples and the cluster sums them;
# one worker computes them over 16. The float32 sums may be taken in another order (and oneDNN
# may choose other convolution kernels for 8 samples than for 16): a relative error of about
# 1e-7 per rounding, at most a few 1e-6 after the sums of a batch; an Adam step carries it into
# the next loss without growing it (a sign it flips is that of a gradient too small to move the
# loss). Measured on a 2-core AMD EPYC (oneDNN on), 4 runs: at most 1.2e-7 (the one-worker run
# itself varies that much from run to run). A real error is far larger: workers whose streams
# differ in order (samples of the batch missing or counted twice) moved the loss by 7 %, and
# epoch 2 sits 0.8 % below epoch 1, so another update (gradients not summed, optimizer state or
# schedule not restored) moves it by a good part of that.
LOSS_RTOL = 1e-5
# Guards against a hung collective or a worker that never starts, not speed bars (the whole
# test uses about 145 s of CPU time: 3.5 min on a 2-core CPU that other jobs kept busy).
RUN_TIMEOUT_S = 240
# A worker killed inside an all-reduce: the chief learns it from TensorFlow's coordination
# service (missing heartbeats) and fails, rather than waiting for the all-reduce forever.
CHIEF_FAILS_WITHIN_S = 120


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return synthetic_records(tmp_path_factory.mktemp("cluster_data"), num_workers=1,
                             num_train=NUM_TRAIN, num_test=4, num_frames=20, height=40,
                             width=54, seed=3, num_shards=2)


def train_command(data_dir, model_dir, *extra):
    """A tiny C3D-AVG-MTL (quickstart topology) trained on one batch of the whole training set
    per epoch, without augmentation, dropout or BatchNorm (see the module docstring)."""
    return [sys.executable, "-m", "aqa_tf.train", "--flagfile=configs/quickstart.cfg",
            f"--data_dir={data_dir}", "--nosynthesize_if_missing", f"--model_dir={model_dir}",
            f"--export_dir={os.path.join(model_dir, 'export')}", "--verbose=2",
            "--stored_height=40", "--stored_width=54", "--sample_length=16", "--num_frames=16",
            "--clip_length=16", "--clip_stride=16", "--crop_size=32",
            "--width_multiplier=0.0625", "--fc_units=16", "--dropout=0",
            "--nobackbone_batch_norm", f"--batch_size={NUM_TRAIN}", "--temporal_jitter=0",
            "--norandom_flip", "--val_fraction=0", f"--epochs={EPOCHS}",
            "--noevaluate_before_training", "--mixed_precision=none", *extra]


class Processes:
    """The training processes of the test, with their logs; all are killed at the end."""

    def __init__(self, folder):
        self.folder = folder
        self.running = []

    def start(self, name, cmd, **env):
        env = dict(os.environ, **env)
        if glob.glob("/dev/nvidia[0-9]*"):
            # No accelerator: the workers share this machine's CPU (and would fight over a
            # GPU). (A new interpreter then: the command server forks with the variable as
            # it found it. Without a GPU, as in CI, the commands fork from it: ~6 s of imports
            # saved per process.)
            env["CUDA_VISIBLE_DEVICES"] = ""
        path = os.path.join(self.folder, f"{name}.log")
        proc = start_module(cmd[2], *cmd[3:], log=path, env=env)
        proc.name, proc.log = name, path
        self.running.append(proc)
        return proc

    def start_cluster(self, name, cmd, tmp_dir):
        """Worker 0 (the chief) and worker 1 of a localhost cluster, on free ports; each
        keeps its temporary files (a non-chief worker's run folder) in `tmp_dir`."""
        ports = free_ports(2)
        os.makedirs(tmp_dir, exist_ok=True)
        return [self.start(f"{name}_worker{index}", cmd + ["--distribution=multi_worker"],
                           TMPDIR=str(tmp_dir), TF_CONFIG=json.dumps({
                               "cluster": {"worker": [f"localhost:{p}" for p in ports]},
                               "task": {"type": "worker", "index": index}}))
                for index in range(2)]

    @staticmethod
    def output(proc):
        with open(proc.log) as f:
            return f.read()

    def finish(self, proc, timeout=RUN_TIMEOUT_S):
        """Waits for `proc`; its output. Fails (and the finalizer kills the rest) on a
        non-zero exit or a timeout."""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{proc.name} still runs after {timeout} s:\n{self.output(proc)[-3000:]}")
        assert proc.returncode == 0, f"{proc.name} failed:\n{self.output(proc)[-5000:]}"
        return self.output(proc)

    def kill_all(self):
        for proc in self.running:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def processes(tmp_path):
    procs = Processes(str(tmp_path))
    yield procs
    procs.kill_all()


def backed_up_epochs(model_dir):
    path = os.path.join(model_dir, "backup", "training_metadata.json")
    try:
        with open(path) as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError):  # not there yet, or being written
        return 0


def epoch_losses(model_dir):
    losses = {}
    for epoch in range(1, EPOCHS + 1):
        with open(os.path.join(model_dir, "metrics", f"epoch_{epoch:03d}.json")) as f:
            losses[epoch] = json.load(f)["train"]
    return losses


def wait_until(condition, processes, what, timeout=RUN_TIMEOUT_S):
    """Polls `condition` while every process of `processes` runs; fails after `timeout`."""
    deadline = time.time() + timeout
    while not condition():
        for proc in processes:
            assert proc.poll() is None, f"{proc.name} ended before {what}:\n" + \
                Processes.output(proc)[-5000:]
        assert time.time() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.1)


def test_two_workers_train_as_one_and_resume_after_a_worker_is_killed(data_dir, processes,
                                                                      tmp_path):
    began = time.time()
    single_dir, cluster_dir = str(tmp_path / "single"), str(tmp_path / "cluster")
    single = processes.start("single", train_command(data_dir, single_dir,
                                                     "--distribution=default"))
    first = processes.start_cluster("first", train_command(data_dir, cluster_dir),
                                    tmp_path / "tmp_first")
    chief, worker = first

    # Kill worker 1 once the chief has backed up epoch 1: both workers are then in epoch 2,
    # which needs them both.
    wait_until(lambda: backed_up_epochs(cluster_dir) >= 1, first, "backup of epoch 1")
    worker.kill()
    worker.wait()
    killed_at = time.time()
    resumed_from = backed_up_epochs(cluster_dir)
    assert 1 <= resumed_from < EPOCHS
    first_epoch = os.path.join(cluster_dir, "metrics", "epoch_001.json")
    first_epoch_mtime = os.path.getmtime(first_epoch)
    # Worker 1 backed up into its temporary folder, not into the run folder.
    assert glob.glob(str(tmp_path / "tmp_first" / "aqa_tf_worker1_*" / "backup" /
                         "training_metadata.json"))

    try:
        chief.wait(timeout=CHIEF_FAILS_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail("the chief still waits for its killed peer after "
                    f"{CHIEF_FAILS_WITHIN_S} s:\n{processes.output(chief)[-3000:]}")
    chief_failed_after = time.time() - killed_at
    output = processes.output(chief)
    assert chief.returncode != 0 and "UnavailableError" in output, output[-3000:]
    assert "Strategy MultiWorkerMirroredStrategy with 2 replica(s)" in output
    # It wrote no newer backup. (Checked before the second cluster starts: that one backs up
    # epoch 2 into the same folder, sometimes before a busy machine's chief has failed.)
    assert backed_up_epochs(cluster_dir) == resumed_from

    # The same command on both workers again (on new ports: the old chief's may not be free
    # yet): training goes on from the chief's backup.
    second = processes.start_cluster("second", train_command(data_dir, cluster_dir),
                                     tmp_path / "tmp_second")

    # The reference run is stopped once it has written its last epoch's metrics (its final
    # evaluation and export would only take CPU time from the cluster).
    last_epoch = os.path.join(single_dir, "metrics", f"epoch_{EPOCHS:03d}.json")
    wait_until(lambda: os.path.exists(last_epoch), [single], "metrics of the reference run")
    single.kill()

    chief, worker = second
    chief_out, worker_out = processes.finish(chief), processes.finish(worker)
    for out in (chief_out, worker_out):
        assert f"Resuming {cluster_dir} after epoch {resumed_from} of {EPOCHS}" in out, out
    assert "waiting for the chief's evaluation and export" in worker_out
    assert os.path.getmtime(first_epoch) == first_epoch_mtime  # epoch 1 was not trained again
    with open(os.path.join(cluster_dir, "final_metrics.json")) as f:
        final = json.load(f)
    assert final["metrics"]["num_samples"] == 4 and final["checkpoint_epoch"] == EPOCHS
    assert os.path.exists(os.path.join(cluster_dir, "export", "quickstart", "1",
                                       "saved_model.pb"))
    # Only the chiefs wrote TensorBoard logs (the files are named after the writing process).
    events = glob.glob(os.path.join(cluster_dir, "logs", "**", "*tfevents*"), recursive=True)
    chiefs = {first[0].pid, second[0].pid}
    assert events and {int(os.path.basename(e).split(".")[-3]) for e in events} <= chiefs, events
    # Worker 1 removed its temporary run folder (AutoGraph leaves its own files there).
    assert not glob.glob(str(tmp_path / "tmp_second" / "aqa_tf_worker1_*"))

    single_losses, cluster_losses = epoch_losses(single_dir), epoch_losses(cluster_dir)
    differences = {}
    for epoch in range(1, EPOCHS + 1):
        assert set(cluster_losses[epoch]) == set(single_losses[epoch])
        for name, value in single_losses[epoch].items():
            differences[f"{epoch}/{name}"] = abs(cluster_losses[epoch][name] - value) / value
    print(f"one worker: {single_losses}\ntwo workers: {cluster_losses}\nlargest relative "
          f"difference {max(differences.values()):.2e}; the chief failed "
          f"{chief_failed_after:.1f} s after its peer was killed; test body took "
          f"{time.time() - began:.0f} s")
    for epoch in range(1, EPOCHS + 1):
        names = sorted(single_losses[epoch])
        np.testing.assert_allclose([cluster_losses[epoch][k] for k in names],
                                   [single_losses[epoch][k] for k in names], rtol=LOSS_RTOL,
                                   err_msg=f"epoch {epoch} losses {names}")
    # Training moved the loss (epoch 2 does not compare an untrained model).
    first_loss = single_losses[1]["loss"]
    assert abs(single_losses[2]["loss"] - first_loss) > 0.001 * first_loss

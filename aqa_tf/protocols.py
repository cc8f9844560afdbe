r"""Paper 003's multi-action protocols on AQA-7: one command trains every model a protocol
needs and writes its results table.

  python -m aqa_tf.protocols --protocol=all_action --flagfile configs/paper003_aqa7_c3d_lstm.cfg
  python -m aqa_tf.protocols --protocol=single_action --flagfile configs/paper003_aqa7_c3d_lstm.cfg
  python -m aqa_tf.protocols --protocol=zero_shot --flagfile configs/paper003_aqa7_c3d_lstm.cfg
  python -m aqa_tf.protocols --protocol=finetune --flagfile configs/paper003_aqa7_c3d_lstm.cfg \
      --pretrained_dir runs/paper003_aqa7/zero_shot

- all_action (Table 2): one model on the six actions; Spearman per action and their Fisher-z
  average.
- single_action (Table 2): one model per action, trained and tested on it.
- zero_shot (Table 3, "multi-action" row): for each action, a model trained on the other five and
  tested on it; the untrained model's Spearman on it is the random-initialisation row
  (`--evaluate_before_training`, `metrics/epoch_000.json`).
- finetune (Table 4): for each action and training-set size ({25, 75, 125}; {15, 25, 35} for the
  synchronised-diving actions), fine-tuning from the zero-shot model that never saw the action
  (`--pretrained_dir`, "AA") and from random initialisation ("RI"), tested on 50 samples of the
  action's test split; iterations and step size scale with the size as the paper's rule
  (`finetune_schedule`).

And the 4-fold cross-validation of JIGSAWS (USDL/MUSDL, nzl-thu/MUSDL `JIGSAWS/`):

  python -m aqa_tf.protocols --protocol=cross_validation --flagfile configs/jigsaws_musdl_i3d.cfg \
      --data_dir data/jigsaws [--protocol_tasks=Suturing,Knot_Tying]

- cross_validation: per task (`--protocol_tasks`) and fold k, a run `<task>/fold<k>` on
  `<data_dir>/<task>` (the converter's per-task folders) testing fold k and training on the
  other three; per task the test Spearman of each fold and their plain mean (as the authors'
  `JIGSAWS/main.py` averages the 4 folds' rhos), and the Fisher-z average of the task means (as
  their `JIGSAWS_avg.xls`). The authors report the mean of the last 10 epochs' fold-averaged
  test rhos; each run here is tested once, with its chosen checkpoint (the last epoch when
  `--val_fraction=0`).

Each model is a `python -m aqa_tf.train` run in `<protocol_dir>/<run>/` with the flags of this
command plus the protocol's own (`--actions`, `--test_actions`, `--data_dir`, the splits...): a
run that finished is not trained again, an interrupted one resumes. The checkpoint of each run
is chosen on its validation split (or is the last one where there is none); the test split never
chooses. The results go to `<protocol_dir>/results.{json,txt,png}`.
"""

import glob
import json
import math
import os
import subprocess
import sys
from typing import Dict, List, Tuple

from aqa_tf import flag_defs
from aqa_tf import tasks
from aqa_tf.config import ConfigError, ProtocolOptions
from aqa_tf.data import jigsaws
from aqa_tf.data import shards


def define_flags():
    """The training-run flags (every run starts from them) and the protocol's options."""
    flag_defs.define_flags()
    flag_defs.define_config_flags(ProtocolOptions)


SYNC_DIVING = ("sync_diving_3m", "sync_diving_10m")
# Paper 003, Sec. 5.3: {25, 75, 125} samples -> {500, 1200, 2000} iterations and a learning-rate
# step of {100, 300, 500} iterations; "similar scaling" for 15 and 35 samples. Between and
# beyond the paper's points the iterations and steps are interpolated linearly in the size.
_SCHEDULE_POINTS = ((25, 500, 100), (75, 1200, 300), (125, 2000, 500))


def finetune_schedule(samples: int) -> Tuple[int, int]:
    """(iterations, step size) for `samples` training samples (paper 003's rule)."""
    points = _SCHEDULE_POINTS
    low, high = (points[0], points[1]) if samples <= points[1][0] else (points[1], points[2])
    t = (samples - low[0]) / (high[0] - low[0])
    iterations = low[1] + t * (high[1] - low[1])
    step = low[2] + t * (high[2] - low[2])
    return max(100, int(round(iterations, -2))), max(10, int(round(step)))


def finetune_sizes(action: str, options: ProtocolOptions) -> List[int]:
    """The training-set sizes of the finetune protocol for `action`."""
    if options.finetune_sizes:
        return list(options.finetune_sizes)
    return [15, 25, 35] if action in SYNC_DIVING else [25, 75, 125]


def check_task_folder(data_dir: str, task: str):
    """Raises ConfigError unless `<data_dir>/<task>` holds the shards of every fold."""
    folder = jigsaws.task_dir(data_dir, task)
    if not os.path.isdir(folder):
        raise ConfigError(f"--data_dir={data_dir} has no folder {task}/ (the task's fold0.."
                          f"fold{jigsaws.NUM_FOLDS - 1} shards that python -m "
                          "tfrecords_tools.jigsaws writes); --protocol_tasks picks the tasks")
    for k in range(jigsaws.NUM_FOLDS):
        pattern = shards.shard_pattern(folder, jigsaws.fold_split(k))
        if not glob.glob(pattern):
            raise ConfigError(f"--data_dir={data_dir}: no shards of {task} fold {k} ({pattern})")


def cross_validation_plan(options: ProtocolOptions, data_dir: str
                          ) -> List[Tuple[str, List[str]]]:
    """The runs `<task>/fold<k>`: each tests fold k of the task and trains on the others."""
    runs = []
    for task in options.protocol_tasks:
        if not options.dry_run:
            check_task_folder(data_dir, task)
        for k in options.protocol_folds:
            train = ",".join(jigsaws.fold_split(f) for f in range(jigsaws.NUM_FOLDS) if f != k)
            runs.append((f"{task}/{jigsaws.fold_split(k)}", [
                f"--data_dir={jigsaws.task_dir(data_dir, task)}", f"--train_split={train}",
                f"--test_split={jigsaws.fold_split(k)}"]))
    return runs


def plan(options: ProtocolOptions, data_dir: str = "") -> List[Tuple[str, List[str]]]:
    """(run name, extra flags) of every model of the protocol `options.protocol`; `data_dir`:
    the records' folder of the training flags (cross_validation: the JIGSAWS root)."""
    protocol, actions = options.protocol, options.protocol_actions
    if protocol == "cross_validation":
        return cross_validation_plan(options, data_dir)
    if protocol == "all_action":
        return [("all_action", [f"--actions={','.join(tasks.AQA7_ACTIONS)}", "--test_actions="])]
    if protocol == "single_action":
        return [(a, [f"--actions={a}", f"--test_actions={a}"]) for a in actions]
    if protocol == "zero_shot":
        return [(a, [f"--actions={','.join(o for o in tasks.AQA7_ACTIONS if o != a)}",
                     f"--test_actions={a}", "--evaluate_before_training"]) for a in actions]
    if not options.pretrained_dir:
        raise ConfigError("--protocol=finetune needs --pretrained_dir (the folder of a "
                          "zero_shot protocol run)")
    runs = []
    for action in actions:
        pretrained = os.path.join(options.pretrained_dir, action, "best.weights.h5")
        if not options.dry_run and not os.path.exists(pretrained):
            raise FileNotFoundError(f"{pretrained}: the zero_shot model without {action} "
                                    "(run --protocol=zero_shot first)")
        for size in finetune_sizes(action, options):
            iterations, step = finetune_schedule(size)
            common = [f"--actions={action}", f"--test_actions={action}",
                      f"--train_samples={size}", f"--test_samples={options.finetune_test_samples}",
                      "--val_fraction=0", f"--batch_size={options.finetune_batch_size}",
                      # One epoch = 100 iterations: the test curve of Fig. 3.
                      "--steps_per_epoch=100", f"--epochs={max(1, iterations // 100)}",
                      "--lr_schedule=step", f"--lr_decay_steps={step}", "--lr_decay_factor=0.5",
                      "--test_every_epoch"]
            runs.append((f"{action}_{size}_aa", common + [
                f"--init_weights={pretrained}", "--init_weights_source=keras_model"]))
            # Random initialisation of what the protocol trains (the frozen backbone keeps its
            # pretrained weights, as in the paper: only the LSTM and regressor start afresh).
            runs.append((f"{action}_{size}_ri", common))
    return runs


def _read(path: str) -> Dict:
    with open(path) as f:
        return json.load(f)


def _test_metrics(run_dir: str) -> Dict:
    return _read(os.path.join(run_dir, "final_metrics.json"))["metrics"]


def _best_test_over_epochs(run_dir: str) -> float:
    """The best test Spearman over the epochs (what paper 003's Table 4 reports: optimistic,
    selected on test; shown beside the honest final figure)."""
    folder = os.path.join(run_dir, "metrics")
    values = [_read(os.path.join(folder, name)).get("test", {}).get("spearman")
              for name in sorted(os.listdir(folder)) if name.startswith("epoch_")]
    values = [v for v in values if v is not None]
    return max(values) if values else float("nan")


def cross_validation_folds(runs: List[Tuple[str, List[str]]], folder: str
                           ) -> Dict[str, Dict[str, float]]:
    """Task -> {`fold k`: the test Spearman of run `<task>/fold<k>`}, in the order run."""
    folds: Dict[str, Dict[str, float]] = {}
    for name, _ in runs:
        task, fold = name.split("/", 1)
        folds.setdefault(task, {})[fold.replace("fold", "fold ")] = _test_metrics(
            os.path.join(folder, name))["spearman"]
    return folds


def cross_validation_series(folds: Dict[str, Dict[str, float]]) -> Dict[str, Dict[str, float]]:
    """Rows `fold k` (task -> that fold's Spearman) and `mean over folds` (task -> the plain
    mean of its folds, as the authors' `JIGSAWS/main.py`: a fold without a Spearman, NaN, makes
    the mean NaN, as there)."""
    series: Dict[str, Dict[str, float]] = {}
    for task, rhos in folds.items():
        for fold, rho in rhos.items():
            series.setdefault(fold, {})[task] = rho
    series["mean over folds"] = {task: float(sum(rhos.values()) / len(rhos))
                                 for task, rhos in folds.items()}
    return series


def collect(protocol: str, runs: List[Tuple[str, List[str]]], folder: str) -> Dict:
    """The results table of a finished protocol: series name -> {action: Spearman, ...} and
    their Fisher-z averages (cross_validation: also `per_task`, each task's fold Spearmans and
    their mean)."""
    from aqa_tf.metrics import scores as metrics_lib
    series: Dict[str, Dict[str, float]] = {}
    extra: Dict = {}
    if protocol == "cross_validation":
        folds = cross_validation_folds(runs, folder)
        series = cross_validation_series(folds)
        extra["per_task"] = {task: {**rhos, "mean": series["mean over folds"][task]}
                             for task, rhos in folds.items()}
    elif protocol == "all_action":
        m = _test_metrics(os.path.join(folder, "all_action"))
        series["all-action"] = {k.split("/", 1)[1]: v for k, v in m.items()
                                if k.startswith("spearman/")}
    elif protocol in ("single_action", "zero_shot"):
        label = "single-action" if protocol == "single_action" else "multi-action (zero-shot)"
        series[label] = {name: _test_metrics(os.path.join(folder, name))["spearman"]
                         for name, _ in runs}
        if protocol == "zero_shot":
            series["random initialisation"] = {
                name: _read(os.path.join(folder, name, "metrics", "epoch_000.json"))["test"][
                    "spearman"] for name, _ in runs}
    else:
        for name, _ in runs:
            action, size, init = name.rsplit("_", 2)
            run_dir = os.path.join(folder, name)
            series.setdefault(f"{init.upper()} final", {})[f"{action}_{size}"] = (
                _test_metrics(run_dir)["spearman"])
            series.setdefault(f"{init.upper()} best over iterations (on test, as the paper)",
                              {})[f"{action}_{size}"] = _best_test_over_epochs(run_dir)
    return {"protocol": protocol, "series": series,
            "fisher_z": {label: metrics_lib.fisher_z_mean(list(values.values()))
                         for label, values in series.items()},
            "plain_mean": {label: float(sum(values.values()) / max(len(values), 1))
                           for label, values in series.items()}, **extra}


# The heading of each protocol's table and plot.
TITLES = {"cross_validation": "JIGSAWS 4-fold cross-validation (test fold, Spearman rho; the "
                              "Fisher-z column averages the tasks)"}


def write_results(results: Dict, folder: str) -> List[str]:
    from aqa_tf.metrics import report as reporting
    columns = list(dict.fromkeys(k for values in results["series"].values() for k in values))
    width = max([12] + [len(c) + 2 for c in columns])
    title = TITLES.get(results["protocol"],
                       f"Paper 003 protocol {results['protocol']} (test split, Spearman rho)")
    lines = [title,
             f"{'':<58}" + "".join(f"{c:>{width}}" for c in columns) + f"{'Fisher-z':>10}"]
    for label, values in results["series"].items():
        lines.append(f"{label:<58}" + "".join(
            f"{values.get(c, math.nan):>{width}.4f}" for c in columns)
            + f"{results['fisher_z'][label]:>10.4f}")
    paths = [os.path.join(folder, f"results.{ext}") for ext in ("json", "txt", "png")]
    with open(paths[0], "w") as f:
        json.dump(results, f, indent=2)
    with open(paths[1], "w") as f:
        f.write("\n".join(lines) + "\n")
    series = {label: {**values, "Fisher-z": results["fisher_z"][label]}
              for label, values in results["series"].items()}
    plot_title = ("JIGSAWS cross-validation" if results["protocol"] == "cross_validation"
                  else f"paper 003 {results['protocol']}")
    reporting.plot_action_bars(paths[2], series, plot_title)
    print("\n".join(lines), flush=True)
    return paths


def main(argv):
    del argv
    options = flag_defs.config_from_flags(ProtocolOptions)
    if options.protocol is None:
        raise ConfigError("--protocol is required (all_action, single_action, zero_shot, "
                          "finetune, cross_validation)")
    train_config = flag_defs.train_config_from_flags()
    folder = options.protocol_dir or os.path.join(train_config.model_dir or "runs",
                                                  options.protocol)
    runs = plan(options, flag_defs.data_config_from_flags().data_dir)
    os.makedirs(folder, exist_ok=True)
    # The flags of this command (not the protocol's own): every run starts from them.
    base = flag_defs.write_flagfile(os.path.join(folder, "protocol_flags.txt"))
    for index, (name, extra) in enumerate(runs, 1):
        run_dir = os.path.join(folder, name)
        experiment = f"{options.protocol}_{name}".replace("/", "_")
        command = [sys.executable, "-m", "aqa_tf.train", f"--flagfile={base}", *extra,
                   f"--model_dir={run_dir}", f"--experiment_name={experiment}",
                   f"--export_dir={os.path.join(folder, 'saved_models')}"]
        print(f"[{index}/{len(runs)}] {name}: {' '.join(command[1:])}", flush=True)
        if options.dry_run:
            continue
        if os.path.exists(os.path.join(run_dir, "final_metrics.json")):
            print("  finished before: kept", flush=True)
            continue
        os.makedirs(os.path.dirname(run_dir), exist_ok=True)  # <task>/ of <task>/fold<k>
        with open(os.path.join(folder, f"{name}.log"), "w") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
        if code != 0:
            raise ConfigError(f"run {name} failed (exit {code}); its output: "
                              f"{os.path.join(folder, name + '.log')}")
    if options.dry_run:
        return
    paths = write_results(collect(options.protocol, runs, folder), folder)
    print("Results: " + ", ".join(paths), flush=True)


if __name__ == "__main__":
    define_flags()
    flag_defs.run(main)

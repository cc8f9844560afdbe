r"""Trains an AQA model from a flagfile, evaluates it every epoch and exports a SavedModel.

  python -m aqa_tf.train --flagfile configs/quickstart.cfg

Re-running the same command resumes from the last finished epoch (state in `<model_dir>/backup`).
"""

import dataclasses
import os

from aqa_tf import flag_defs


def _synthesize(data_config, strategy, chief: bool):
    """Generates the synthetic dataset into `--data_dir` where it is absent (on a cluster the
    chief generates first; the other workers then find its dataset, a shared data_dir, or
    generate their own)."""
    from aqa_tf import devices
    from aqa_tf.data import synthetic
    if not chief:
        devices.barrier(strategy)
    generated = synthetic.ensure_dataset(data_config.data_dir,
                                         flag_defs.synthetic_config_from_flags())
    if chief:
        devices.barrier(strategy)
    print(("Generated" if generated else "Using existing") +
          f" synthetic dataset in {data_config.data_dir}", flush=True)


def _check_resumable(flags_path: str, resumed_flags: str, model_config, data_config):
    """Refuses to resume a run folder whose backup is of another model (its flags.txt,
    `resumed_flags`, built another one): names the options that differ and puts the run's
    flags.txt back."""
    from aqa_tf.weights import sources
    differ = sources.differing_model_options(sources.parse_flags(resumed_flags), model_config,
                                             data_config)
    if differ:
        with open(flags_path, "w") as f:
            f.write(resumed_flags)
        folder = os.path.dirname(flags_path)
        raise flag_defs.ConfigError(
            f"--model_dir={folder} holds a run of another model, which this command would "
            f"resume: {'; '.join(differ)}; give another --model_dir, or delete {folder} to "
            "start over")


def main(argv):
    del argv
    train_config = flag_defs.train_config_from_flags()
    if not train_config.model_dir:
        raise flag_defs.ConfigError("--model_dir is required")
    data_config = flag_defs.data_config_from_flags()
    eval_config = flag_defs.eval_config_from_flags()
    export_config = flag_defs.export_config_from_flags()
    flag_defs.check_model_flags()  # before the run folder and the data are made
    if train_config.export_after_training:  # refused now, not after the training
        flag_defs.writable_folder(export_config.export_dir, "--export_dir")

    # Devices must be configured before anything touches TensorFlow's runtime.
    from aqa_tf import devices
    devices.setup_devices(train_config.cpu_replicas)
    # So must the strategy: MultiWorkerMirroredStrategy configures the collective operations.
    strategy = devices.make_strategy(train_config.distribution)

    from aqa_tf.metrics import report as reporting
    from aqa_tf.training import run_folder
    from aqa_tf.training import train_lib
    chief = devices.is_chief(strategy)
    flags_path, resumed_flags = "", None
    if chief:  # the other workers of a cluster leave the run folder to the chief
        # Held until the process ends: a second run on this folder is refused.
        lock = run_folder.lock(train_config.model_dir)  # noqa: F841
        flags_path = os.path.join(train_config.model_dir, run_folder.FLAGS_FILE)
        if (run_folder.RunFolder(train_config.model_dir).completed_epochs()
                and os.path.exists(flags_path)):
            with open(flags_path) as f:
                resumed_flags = f.read()  # the run to resume: checked below, kept if refused
        flag_defs.write_flagfile(flags_path)
    if train_config.synthesize_if_missing:
        _synthesize(data_config, strategy, chief)
    model_config = flag_defs.model_config_from_flags()  # the vocabulary may be generated above
    # Options derived from the training data (CoRe's groups) go into the run's flags.txt:
    # its checkpoints are rebuilt with them, whatever data is at hand then.
    from aqa_tf.models.heads import pin_options
    pinned = pin_options(model_config, data_config)
    if pinned != model_config:
        changed = {f.name: getattr(pinned, f.name) for f in dataclasses.fields(pinned)
                   if getattr(pinned, f.name) != getattr(model_config, f.name)}
        flag_defs.pin_flags(changed)
        model_config = pinned
        if flags_path:
            flag_defs.write_flagfile(flags_path)
    if resumed_flags:
        _check_resumable(flags_path, resumed_flags, model_config, data_config)
    from aqa_tf.data import statistics
    from aqa_tf.training import precision
    # Read once: the training run and the precision probe share the per-action statistics.
    data_config = statistics.with_action_statistics(data_config)
    policy = precision.choose(model_config, data_config, train_config,
                              cache_dir=train_config.model_dir)
    devices.configure_run(train_config.seed, policy, train_config.deterministic)
    import keras
    print(f"Strategy {type(strategy).__name__} with {strategy.num_replicas_in_sync} "
          f"replica(s); dtype policy {keras.mixed_precision.global_policy().name}; Keras on "
          f"{keras.backend.backend()}", flush=True)

    run = train_lib.TrainingRun(data_config, model_config, train_config, eval_config, strategy)
    if not run.is_chief:
        try:
            run.fit()
        finally:
            run.remove_worker_folder()
        print(f"{devices.worker_name(strategy)} trained; waiting for the chief's evaluation and "
              "export", flush=True)
        devices.barrier(strategy)  # the cluster ends together
        return
    if train_config.evaluate_before_training:
        run.evaluate_untrained()
    run.fit()
    result = run.final_evaluation()
    export_path = (run.export(export_config, flags_path) if train_config.export_after_training
                   else "not exported (--noexport_after_training)")
    print(reporting.format_report(result), flush=True)
    print(f"SavedModel: {export_path}\nRun folder: {train_config.model_dir}", flush=True)
    devices.barrier(strategy)


if __name__ == "__main__":
    flag_defs.define_flags()
    flag_defs.run(main)

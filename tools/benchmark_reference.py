r"""Training and inference speed of the MTL-AQA authors' own PyTorch C3D-AVG-MTL, for a same-run
comparison with `python -m aqa_tf.benchmark` (issue 12).

  python tools/benchmark_reference.py \
      --reference_dir=/work/reference/MTL-AQA/MTL-AQA_code_release/models/C3DAVG --precision=bf16

`--reference_dir` is the folder of their C3D-AVG modules (`models/C3DAVG` of
github.com/ParitoshParmar/MTL-AQA, `MTL-AQA_code_release/`; nothing of theirs is in this
repository, see tools/README.md). The script imports their classes from there (`C3D_altered`,
`my_fc6`, `score_regressor`, `dive_classifier`, `S2VTModel`, and `LanguageModelCriterion` from the
release's `utils/utils_1.py`) and wires them as their `train_test_C3DAVG.py` does: C3D on each
16-frame clip, the clip features averaged, fc6, then the score regressor, the five sub-action
classifiers and the S2VT caption model on the per-clip features, with the sizes of their
`opts.py`. Weights are random (the speed does not depend on them).

Like `aqa_tf.benchmark`, each measurement runs `--warmup_steps` untimed steps, then
`--benchmark_steps` timed ones, on one fixed random batch (full-length captions), kept on the host
and moved to `--device` at each step as their loop moves each DataLoader batch:
  train      forward, their losses (MSE + L1 on the score, cross-entropy per sub-action, 0.01 x
             their caption criterion), backward, Adam step (lr 1e-4)
  inference  forward of score and sub-actions in eval mode under no_grad, results to the host
             (their test phase; it does not caption)
  caption_generation  C3D features + their S2VT greedy decoding (`mode='inference'`)
`--precision=bf16` runs the forward passes (and losses) under torch.autocast(bfloat16).
"""

import contextlib
import importlib
import importlib.util
import json
import os
import platform
import sys
import time

from absl import app
from absl import flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from aqa_tf.config import ConfigError  # noqa: E402  (after the repository is on sys.path)

flags.DEFINE_string("reference_dir", "", "The folder of the MTL-AQA authors' C3D-AVG modules "
                    "(MTL-AQA_code_release/models/C3DAVG of github.com/ParitoshParmar/MTL-AQA; "
                    "their opts.py and utils/utils_1.py are looked for in it and its two parents).")
flags.DEFINE_enum("precision", "fp32", ["fp32", "bf16"], "fp32, or bf16: forward passes under "
                  "torch.autocast(dtype=torch.bfloat16).")
flags.DEFINE_enum("device", "cpu", ["cpu", "cuda"], "Where the model runs (cuda: GPU 0).")
flags.DEFINE_enum("cudnn", "deterministic", ["deterministic", "benchmark"], "With "
                  "--device=cuda: cuDNN's algorithm choice. deterministic: as their "
                  "train_test_C3DAVG.py (torch.backends.cudnn.deterministic=True); benchmark: "
                  "cuDNN times the algorithms of each shape and keeps the fastest "
                  "(cudnn.benchmark=True), PyTorch at its fastest.")
flags.DEFINE_boolean("batch_on_device", False, "With --device=cuda: move the fixed batch to "
                     "the GPU once, before timing, instead of at every step as their loop moves "
                     "each batch (aqa_tf.benchmark's flag of the same name).")
flags.DEFINE_integer("batch_size", 3, "Samples per batch (their train_batch_size).")
flags.DEFINE_integer("num_clips", 6, "16-frame clips per sample (their 103-frame samples give 6).")
flags.DEFINE_integer("warmup_steps", 2, "Untimed steps before each measurement.")
flags.DEFINE_integer("benchmark_steps", 5, "Timed steps of each measurement.")
flags.DEFINE_integer("threads", 0, "torch.set_num_threads (0: one per core this process may "
                     "use).")
flags.DEFINE_boolean("captions", True, "With their S2VT caption model (C3D-AVG-MTL); "
                     "--nocaptions: score and sub-actions only.")
flags.DEFINE_integer("seed", 0, "Seed of the random weights and batch.")
flags.DEFINE_string("benchmark_output", "", "JSON file for the results (default: "
                    "benchmark_reference_c3d_<precision>.json in the current folder).")
FLAGS = flags.FLAGS

CLIP_LENGTH = 16
CROP_SIZE = 112  # C3D_altered's `h.view(-1, 8192)` holds only for 112x112 frames
# The modules of their models/C3DAVG folder, by the class each defines.
REFERENCE_MODULES = ("C3D_altered", "my_fc6", "score_regressor", "dive_classifier", "S2VTModel")
# Their dive_classifier's heads, in its output order, and the names aqa-tf gives them.
SUB_ACTIONS = (("position", 3), ("armstand", 2), ("rotation_type", 4), ("somersaults", 10),
               ("twists", 8))
# The width of C3D_altered's output (`h.view(-1, 8192)`): the caption model's dim_vid for C3D-AVG.
# Their opts.py as released holds MSCADC's 1200, with the comment "C3D-AVG: 8192".
C3D_FEATURES = 8192
CAPTION_LOSS_WEIGHT = 0.01  # train_test_C3DAVG.py: loss += loss_caption*0.01
LEARNING_RATE = 1e-4  # train_test_C3DAVG.py: optim.Adam(parameters_2_optimize, lr=0.0001)
SOS_ID = 1  # S2VTModel's default sos_id; captions start with it


def _check_flags():
    if not FLAGS.reference_dir:
        raise ConfigError("--reference_dir is required: the folder of the MTL-AQA authors' "
                          "C3D-AVG modules (MTL-AQA_code_release/models/C3DAVG of "
                          "github.com/ParitoshParmar/MTL-AQA; see tools/README.md)")
    folder = os.path.abspath(FLAGS.reference_dir)
    if not os.path.isdir(folder):
        raise ConfigError(f"--reference_dir={FLAGS.reference_dir}: no such folder")
    missing = [f"{name}.py" for name in REFERENCE_MODULES
               if not os.path.isfile(os.path.join(folder, f"{name}.py"))]
    if missing:
        raise ConfigError(f"--reference_dir={FLAGS.reference_dir} is not the authors' C3DAVG "
                          f"folder: {', '.join(missing)} missing (expected "
                          "MTL-AQA_code_release/models/C3DAVG)")
    for name in ("batch_size", "num_clips", "benchmark_steps"):
        if FLAGS[name].value < 1:
            raise ConfigError(f"--{name}={FLAGS[name].value}: must be at least 1")
    for name in ("warmup_steps", "threads"):
        if FLAGS[name].value < 0:
            raise ConfigError(f"--{name}={FLAGS[name].value}: must not be negative")
    return folder, _release_root(folder)


def _release_root(folder: str) -> str:
    """The code-release folder holding their `opts.py` (which every module of theirs imports) and
    `utils/utils_1.py`: --reference_dir or one of its two parents."""
    for root in (folder, os.path.dirname(folder), os.path.dirname(os.path.dirname(folder))):
        if (os.path.isfile(os.path.join(root, "opts.py"))
                and os.path.isfile(os.path.join(root, "utils", "utils_1.py"))):
            return root
    raise ConfigError(f"their modules import `opts` and the caption loss is in utils/utils_1.py: "
                      f"neither {folder} nor its two parents hold opts.py and utils/utils_1.py "
                      "(give the C3DAVG folder inside a full MTL-AQA_code_release copy)")


def _import_reference(folder: str, root: str):
    """Their modules (by their module names, from `folder` and the release root `root` on
    sys.path), their `opts` and `utils_1`."""
    for path in (root, folder):
        if path not in sys.path:
            sys.path.insert(0, path)
    opts = importlib.import_module("opts")
    if os.path.dirname(os.path.abspath(opts.__file__)) != root:
        raise ConfigError(f"`import opts` found {opts.__file__}, not their {root}/opts.py: "
                          "another module named opts shadows it")
    modules = {name: importlib.import_module(name) for name in REFERENCE_MODULES}
    for name, module in modules.items():
        if os.path.dirname(os.path.abspath(module.__file__)) != folder:
            raise ConfigError(f"`import {name}` found {module.__file__}, not the one in {folder}")
    # By path: a top-level `utils` package elsewhere on sys.path would shadow theirs.
    spec = importlib.util.spec_from_file_location("mtl_aqa_utils_1",
                                                  os.path.join(root, "utils", "utils_1.py"))
    utils_1 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils_1)
    return opts, modules, utils_1


def _cpu_description() -> str:
    """'<model name> (family F, model M)' from /proc/cpuinfo, else platform's processor name."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']}, model {info['model']})"
    return name


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _cpu_bf16_kernels(torch) -> bool:
    """Whether torch's oneDNN has bfloat16 kernels on this CPU (AVX-512 BF16 or AMX); without
    them, bfloat16 Conv3d runs on far slower fallback kernels."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@contextlib.contextmanager
def _cuda_calls_stay(device):
    """Their S2VTModel.forward moves tensors with `.cuda()` (`target_variable.type(
    torch.LongTensor).cuda()` at every teacher-forced step, `torch.LongTensor([sos_id] *
    batch_size).cuda()` before greedy decoding), which fails without a GPU. On the CPU, `.cuda()`
    returns the tensor unchanged while their caption model runs; on a GPU their calls run as
    written (each teacher-forced step copies the targets to the host and back, as in their
    training)."""
    import torch
    if device.type == "cuda":
        yield
        return
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda = original


class ReferenceModel:
    """C3D-AVG-MTL from their modules, wired as their train_test_C3DAVG.py wires them."""

    def __init__(self, opts, modules, utils_1, captions: bool, num_clips: int, device):
        import torch
        from torch import nn
        self.device, self.num_clips = device, num_clips
        self.cnn = modules["C3D_altered"].C3D_altered()
        self.fc6 = modules["my_fc6"].my_fc6()
        self.regressor = modules["score_regressor"].score_regressor()
        self.classifier = modules["dive_classifier"].dive_classifier()
        self.parts = [self.cnn, self.fc6, self.regressor, self.classifier]
        self.caption = None
        if captions:
            self.caption = modules["S2VTModel"].S2VTModel(
                opts.vocab_size, opts.max_cap_len, opts.caption_lstm_dim_hidden,
                opts.caption_lstm_dim_word, C3D_FEATURES, rnn_cell=opts.caption_lstm_cell_type,
                n_layers=opts.caption_lstm_num_layers, rnn_dropout_p=opts.caption_lstm_dropout)
            self.parts.append(self.caption)
            self.caption_criterion = utils_1.LanguageModelCriterion()
        for part in self.parts:
            part.to(device)
        # Their main(): one Adam over the parameters of every part, lr 1e-4.
        self.optimizer = torch.optim.Adam([p for part in self.parts for p in part.parameters()],
                                          lr=LEARNING_RATE)
        self.mse, self.l1, self.cross_entropy = nn.MSELoss(), nn.L1Loss(), nn.CrossEntropyLoss()

    def parameters(self) -> int:
        return sum(p.numel() for part in self.parts for p in part.parameters())

    def train(self, training: bool):
        for part in self.parts:
            part.train(training)

    def features(self, video):
        """Their clip loop: `video` [batch, frames, C, H, W] as their DataLoader gives it,
        transposed to [batch, C, frames, H, W]; C3D on each 16-frame clip in turn; the clip
        features [batch, clips, 8192] and their mean through fc6."""
        import torch
        video = video.transpose(1, 2)
        clip_feats = torch.stack([self.cnn(video[:, :, i:i + CLIP_LENGTH])
                                  for i in range(0, self.num_clips * CLIP_LENGTH, CLIP_LENGTH)],
                                 dim=1)
        return clip_feats, self.fc6(clip_feats.mean(1))

    def loss(self, batch):
        """Forward and their training loss (train_phase of train_test_C3DAVG.py)."""
        clip_feats, fc6 = self.features(batch["video"])
        score = self.regressor(fc6)
        loss = self.mse(score, batch["score"]) + self.l1(score, batch["score"])
        for logits, (name, _) in zip(self.classifier(fc6), SUB_ACTIONS):
            loss = loss + self.cross_entropy(logits, batch[name])
        if self.caption is not None:
            with _cuda_calls_stay(self.device):
                seq_probs, _ = self.caption(clip_feats, batch["captions"], "train")
            loss = loss + CAPTION_LOSS_WEIGHT * self.caption_criterion(
                seq_probs, batch["captions"][:, 1:], batch["captions_mask"][:, 1:])
        return loss

    def predict(self, video):
        """Score and sub-action probabilities (their test_phase, which does not caption)."""
        import torch
        _, fc6 = self.features(video)
        return [self.regressor(fc6)] + [torch.softmax(logits, dim=1)
                                        for logits in self.classifier(fc6)]

    def generate(self, video):
        clip_feats, _ = self.features(video)
        with _cuda_calls_stay(self.device):
            _, words = self.caption(clip_feats, mode="inference")
        return words


def _random_batch(opts, batch: int, num_clips: int, crop: int, captions: bool, seed: int):
    """A fixed batch on the host, as their DataLoader yields it: video [batch, frames, C, H, W],
    score [batch, 1], sub-action labels, and full-length captions (sos, then words; mask all
    ones): the worst case of their caption criterion (the caption model's cost does not depend on
    the words)."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    x = {"video": torch.randn(batch, num_clips * CLIP_LENGTH, 3, crop, crop, generator=generator),
         "score": torch.empty(batch, 1).uniform_(10, 100, generator=generator)}
    for name, count in SUB_ACTIONS:
        x[name] = torch.randint(0, count, (batch,), generator=generator)
    if captions:
        words = torch.randint(2, opts.vocab_size, (batch, opts.max_cap_len - 1),
                              generator=generator)
        x["captions"] = torch.cat([torch.full((batch, 1), SOS_ID), words], dim=1)
        x["captions_mask"] = torch.ones(batch, opts.max_cap_len)
    return x


def _timed(step, warmup: int, steps: int, synchronize) -> float:
    for _ in range(warmup):
        step()
    synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    return time.perf_counter() - start


def _print_results(results):
    def fmt(v):
        return "n/a" if v is None else f"{v:.4g}"

    print(f"\nReference benchmark: {results['model']} ({results['framework']}), input "
          f"{results['input']}, batch {results['batch_size']}, precision "
          f"{results['precision']}, device {results['device']}"
          f"{' (cuDNN ' + results['cudnn'] + ')' if results['cudnn'] else ''}"
          f"{', batch on the GPU' if results['batch_on_device'] else ''}, "
          f"{results['threads']} threads, "
          f"{results['machine']}")
    print(f"  {'measurement':<26}{'samples/s':>12}")
    for key in ("train_samples_per_s", "inference_samples_per_s",
                "caption_generation_samples_per_s"):
        if key in results:
            print(f"  {key.replace('_samples_per_s', ''):<26}{fmt(results[key]):>12}")
    if results["precision"] == "bf16" and results["cpu_bf16_kernels"] is False:
        print("  (this CPU has no oneDNN bfloat16 kernels: torch runs bfloat16 Conv3d on slow "
              "fallback kernels)")


def _import_torch(device: str, precision: str):
    """torch, checked for `device` ("cpu" or "cuda") and `precision` ("fp32" or "bf16"): a
    missing PyTorch, GPU or bf16 support is a ConfigError (one line)."""
    try:
        import torch
    except ImportError:
        raise ConfigError("the reference benchmark needs PyTorch: pip install -r "
                          "requirements-torch.txt")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device=cuda: torch {torch.__version__} sees no CUDA GPU")
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"--precision=bf16: {torch.cuda.get_device_name(0)} has no "
                              "bfloat16 support")
    return torch


def main(argv):
    del argv
    folder, root = _check_flags()
    torch = _import_torch(FLAGS.device, FLAGS.precision)
    opts, modules, utils_1 = _import_reference(folder, root)
    threads = FLAGS.threads or _usable_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(FLAGS.seed)
    device = torch.device("cuda:0" if FLAGS.device == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # Their script sets torch.backends.cudnn.deterministic=True (benchmark mode stays off).
        torch.backends.cudnn.deterministic = FLAGS.cudnn == "deterministic"
        torch.backends.cudnn.benchmark = FLAGS.cudnn == "benchmark"
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    autocast = (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                if FLAGS.precision == "bf16" else contextlib.nullcontext())

    batch, steps, warmup = FLAGS.batch_size, FLAGS.benchmark_steps, FLAGS.warmup_steps
    model = ReferenceModel(opts, modules, utils_1, FLAGS.captions, FLAGS.num_clips, device)
    host_batch = _random_batch(opts, batch, FLAGS.num_clips, CROP_SIZE, FLAGS.captions,
                               FLAGS.seed)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    results = {
        "model": "C3D-AVG-MTL" if FLAGS.captions else "C3D-AVG (score + sub-actions)",
        "framework": f"PyTorch {torch.__version__}",
        "reference": {"code": "github.com/ParitoshParmar/MTL-AQA MTL-AQA_code_release",
                      "reference_dir": folder, "release_root": root,
                      "modules": list(REFERENCE_MODULES) + ["utils_1.LanguageModelCriterion"]},
        "backbone": "c3d", "width_multiplier": 1.0,
        "heads": ["score", "dive"] + (["caption"] if FLAGS.captions else []),
        "precision": FLAGS.precision, "batch_size": batch, "jit_compile": False,
        "input": [FLAGS.num_clips, CLIP_LENGTH, CROP_SIZE, CROP_SIZE, 3],
        "machine": f"{_cpu_description()}, {os.cpu_count()} cores, GPUs: {gpus}"
                   + (f" ({torch.cuda.get_device_name(0)})" if gpus else ""),
        "device": FLAGS.device, "threads": threads,
        "cudnn": FLAGS.cudnn if device.type == "cuda" else None,
        "batch_on_device": FLAGS.batch_on_device and device.type == "cuda",
        "cpu_bf16_kernels": _cpu_bf16_kernels(torch) if device.type == "cpu" else None,
        "warmup_steps": warmup, "benchmark_steps": steps,
        "input_pipeline_samples_per_s": None,
        "input_pipeline_note": "not measured: their model alone, on a fixed batch",
        "parameters": model.parameters(),
    }
    if FLAGS.captions:
        results["caption"] = {
            "cell": opts.caption_lstm_cell_type, "layers": opts.caption_lstm_num_layers,
            "hidden": opts.caption_lstm_dim_hidden, "embedding": opts.caption_lstm_dim_word,
            "dim_vid": C3D_FEATURES, "dropout": opts.caption_lstm_dropout,
            "vocab_size": opts.vocab_size, "max_len": opts.max_cap_len}

    def to_device():
        return {k: v.to(device, non_blocking=False) for k, v in host_batch.items()}

    if FLAGS.batch_on_device and device.type == "cuda":
        host_batch = to_device()  # .to(device) of a tensor already there returns it

    def train_step():
        data = to_device()
        with autocast():
            loss = model.loss(data)
        model.optimizer.zero_grad()
        loss.backward()
        model.optimizer.step()

    model.train(True)
    seconds = _timed(train_step, warmup, steps, synchronize)
    results["train_samples_per_s"] = batch * steps / seconds

    def inference_step():
        with torch.no_grad(), autocast():
            return [output.cpu() for output in model.predict(host_batch["video"].to(device))]

    model.train(False)
    seconds = _timed(inference_step, warmup, steps, synchronize)
    results["inference_samples_per_s"] = batch * steps / seconds
    if FLAGS.captions:
        def generation_step():
            with torch.no_grad(), autocast():
                return model.generate(host_batch["video"].to(device)).cpu()

        seconds = _timed(generation_step, warmup, steps, synchronize)
        results["caption_generation_samples_per_s"] = batch * steps / seconds

    _print_results(results)
    output = FLAGS.benchmark_output or f"benchmark_reference_c3d_{FLAGS.precision}.json"
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"Written to {output}")


def run(main_fn):
    """`absl.app.run(main_fn)` where a user's mistake ends the program with one `error:` line and
    exit status 2, as `aqa_tf.flag_defs.run` does (not imported from there: `aqa_tf.flag_defs`
    imports TensorFlow, which would load a second framework's runtime into the measured
    process)."""
    def guarded(argv):
        try:
            return main_fn(argv)
        except (ConfigError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            sys.exit(2)

    app.run(guarded)


if __name__ == "__main__":
    run(main)

r"""Training and inference speed of the authors' own PyTorch modules for three I3D-based AQA
methods, at their papers' sizes, for a same-machine comparison with `python -m aqa_tf.benchmark`:

  usdl, musdl  Tang et al., CVPR 2020 (github.com/nzl-thu/MUSDL, MTL-AQA/)
  core         Yu et al., ICCV 2021 (github.com/yuxumin/CoRe, MTL-AQA)
  tsa          Xu et al., CVPR 2022 (github.com/xujinglin/FineDiving)

  python tools/benchmark_reference_methods.py --method=core \
      --reference_dir=/work/reference/CoRe --precision=fp32

`--reference_dir` is a checkout of the method's repository (nothing of theirs is in this
repository, see tools/README.md). The script imports their files from there at run time and
wires them as their training and test loops do (their I3D, heads, losses, optimizer, batch sizes
and clip cutting; comments in the code name the file each choice follows). Weights are random
(the speed does not depend on them). Like `aqa_tf.benchmark`, each measurement runs
`--warmup_steps` untimed steps, then `--benchmark_steps` timed ones, on one fixed random batch
kept on the host and moved to `--device` at each step as their DataLoader loops move each batch:

  usdl, musdl  MTL-AQA/main.py: I3D on 10 clips of 16 frames of a 103-frame 224x224 video
               (starts 0, 10, ..., 80 and the last 16 frames), clip features averaged, their
               Evaluator (USDL: 101 bins; MUSDL: 7 judges x 21 bins), KL divergence against the
               Gaussian targets, Adam. Inference: eval, no_grad, distributions and scores to the
               host (their test phase).
  core         tools/helper.py network_forward_train / network_forward_test, called as their
               tools/runner.py calls them: query and exemplar through their I3D_backbone (10
               clips of 16 frames at 224), RegressTree of depth 5, NLL on the group + MSE inside
               it (groups from utils/Group_helper.py), Adam. Inference: the query against 10
               exemplars (their voter_number); samples/s counts queries.
  tsa          FineDiving tools/helper.py network_forward_train / network_forward_test, called
               as their tools/runner.py calls them: I3D on 9 clips of 16 frames of 96-frame
               112x112 videos, PSNet with BCE on the transitions, resampling to fix_size 5,
               decoder_fuser, MLP_score, MSE on the relative score, Adam. Inference: 10 voters.

`--precision=bf16` runs the forward passes and losses under torch.autocast(bfloat16) (for core
and tsa their helper function, which also runs backward and the optimizer step, runs whole in the
autocast context). The JSON has the keys of aqa_tf.benchmark's results.
"""

import contextlib
import copy
import functools
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import types
import warnings

from absl import app  # noqa: F401  (loaded, with its own flags, before the sibling below)
from absl import flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from aqa_tf.config import ConfigError  # noqa: E402  (after the repository is on sys.path)


def _load_sibling():
    """tools/benchmark_reference.py, for its helpers (`_import_torch`, `_cpu_description`,
    `_usable_cores`, `_cpu_bf16_kernels`, `_timed`, `_cuda_calls_stay`, `run`). It defines absl
    flags of the same names as this script's (--precision, --batch_size, ...): they go into a
    FlagValues of their own while it loads, so that the two scripts' flags do not collide
    (absl.app, which defines flags of its own as it first loads, is imported above)."""
    scratch = flags.FlagValues()
    names = ("DEFINE_string", "DEFINE_enum", "DEFINE_integer", "DEFINE_boolean")
    originals = {name: getattr(flags, name) for name in names}
    for name, define in originals.items():
        setattr(flags, name, functools.partial(define, flag_values=scratch))
    try:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmark_reference.py")
        spec = importlib.util.spec_from_file_location("aqa_tf_tools_benchmark_reference", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, define in originals.items():
            setattr(flags, name, define)
    return module


_sibling = _load_sibling()

METHODS = ("usdl", "musdl", "core", "tsa")
flags.DEFINE_string("method", "", "usdl or musdl (nzl-thu/MUSDL), core (yuxumin/CoRe) or tsa "
                    "(xujinglin/FineDiving).")
flags.DEFINE_string("reference_dir", "", "A checkout of the method's repository (its root: "
                    "the folder holding models/).")
flags.DEFINE_enum("precision", "fp32", ["fp32", "bf16"], "fp32, or bf16: forward passes and "
                  "losses under torch.autocast(dtype=torch.bfloat16).")
flags.DEFINE_enum("device", "cpu", ["cpu", "cuda"], "Where the model runs (cuda: GPU 0, cuDNN "
                  "as their scripts set it).")
flags.DEFINE_integer("batch_size", 0, "Samples per batch, for training and inference (0: their "
                     "config's: training usdl/musdl 4, core 1, tsa 8; test usdl/musdl 20, core "
                     "and tsa 1).")
flags.DEFINE_integer("warmup_steps", 1, "Untimed steps before each measurement.")
flags.DEFINE_integer("benchmark_steps", 3, "Timed steps of each measurement.")
flags.DEFINE_integer("threads", 0, "torch.set_num_threads (0: one per core this process may "
                     "use).")
flags.DEFINE_integer("crop_size", 0, "Smoke tests only: frames of crop_size x crop_size instead "
                     "of the paper's (224; tsa 112).")
flags.DEFINE_integer("num_frames", 0, "Smoke tests only: frames per video instead of the "
                     "paper's (103; tsa 96); at least what their clip cutting reads.")
flags.DEFINE_integer("voters", 0, "core and tsa, smoke tests only: exemplars per query at "
                     "inference instead of their voter_number (10).")
flags.DEFINE_list("measure", ["train", "inference"], "Which measurements to run.")
flags.DEFINE_integer("seed", 0, "Seed of the random weights and batch.")
flags.DEFINE_string("benchmark_output", "", "JSON file for the results (default: "
                    "benchmark_reference_<method>_<precision>.json in the current folder).")
flags.DEFINE_alias("output", "benchmark_output")
FLAGS = flags.FLAGS

CLIP_LENGTH = 16  # every method cuts 16-frame clips
I3D_FEATURES = 1024


class Spec(types.SimpleNamespace):
    """What identifies a method's repository and its papers' sizes."""


SPECS = {
    "usdl": Spec(repo="nzl-thu/MUSDL", title="USDL (Tang et al., CVPR 2020)",
                 files=("models/i3d.py", "models/evaluator.py", "MTL-AQA/main.py",
                        "MTL-AQA/opts.py", "MTL-AQA/config.py"),
                 # MTL-AQA/opts.py: num_frames 103, H = W = 224; main.py: 10 clips.
                 frames=103, crop=224, clips=10, min_frames=10 * 8 + CLIP_LENGTH),
    "core": Spec(repo="yuxumin/CoRe", title="CoRe (Yu et al., ICCV 2021)",
                 files=("models/i3d.py", "models/Backbone.py", "models/RegressTree.py",
                        "tools/helper.py", "utils/Group_helper.py", "utils/misc.py",
                        "configs/MTL_CoRe.yaml"),
                 # configs/MTL_CoRe.yaml frame_length 103; tools/builder.py crops 224;
                 # models/Backbone.py: clips at 0, 10, ..., 80, 86.
                 frames=103, crop=224, clips=10, min_frames=86 + CLIP_LENGTH),
    "tsa": Spec(repo="xujinglin/FineDiving", title="TSA (Xu et al., CVPR 2022)",
                files=("models/i3d.py", "models/PS.py", "models/PS_parts.py",
                       "models/vit_decoder.py", "models/MLP.py", "models/Backbone.py",
                       "tools/helper.py", "utils/misc.py", "FineDiving_TSA.yaml"),
                # FineDiving_TSA.yaml frame_length 96; tools/builder.py crops 112;
                # models/Backbone.py: clips at 0, 10, ..., 80.
                frames=96, crop=112, clips=9, min_frames=80 + CLIP_LENGTH),
}
SPECS["musdl"] = Spec(**dict(vars(SPECS["usdl"]), title="MUSDL (Tang et al., CVPR 2020)"))
# Their I3D's last AvgPool3d needs a final map of at least its window: (2, 7, 7) in MUSDL's and
# CoRe's models/i3d.py, (2, 4, 4) in FineDiving's, i.e. frames of at least 193 (tsa 97) pixels.
POOL_WINDOW = {"usdl": 7, "musdl": 7, "core": 7, "tsa": 4}


def _check_flags():
    if FLAGS.method not in METHODS:
        raise ConfigError(f"--method={FLAGS.method}: must be one of {', '.join(METHODS)}"
                          if FLAGS.method else
                          f"--method is required: one of {', '.join(METHODS)}")
    spec = SPECS[FLAGS.method]
    if not FLAGS.reference_dir:
        raise ConfigError(f"--reference_dir is required: a checkout of the {spec.title} "
                          f"authors' repository (git clone https://github.com/{spec.repo}; see "
                          "tools/README.md)")
    root = os.path.abspath(FLAGS.reference_dir)
    if not os.path.isdir(root):
        raise ConfigError(f"--reference_dir={FLAGS.reference_dir}: no such folder")
    missing = [f for f in spec.files if not os.path.isfile(os.path.join(root, f))]
    if missing:
        raise ConfigError(f"--reference_dir={FLAGS.reference_dir} is not a checkout of "
                          f"github.com/{spec.repo} (for --method={FLAGS.method}): "
                          f"{', '.join(missing)} missing")
    if FLAGS.benchmark_steps < 1:
        raise ConfigError(f"--benchmark_steps={FLAGS.benchmark_steps}: must be at least 1")
    unknown = sorted(set(FLAGS.measure) - {"train", "inference"})
    if unknown or not FLAGS.measure:
        raise ConfigError(f"--measure={','.join(FLAGS.measure)}: train, inference or both")
    if FLAGS.voters and FLAGS.method not in ("core", "tsa"):
        raise ConfigError(f"--voters: only core and tsa score a query against exemplars, not "
                          f"{FLAGS.method}")
    for name in ("batch_size", "warmup_steps", "threads", "crop_size", "num_frames", "voters"):
        if FLAGS[name].value < 0:
            raise ConfigError(f"--{name}={FLAGS[name].value}: must not be negative")
    if FLAGS.num_frames and FLAGS.num_frames < spec.min_frames:
        raise ConfigError(f"--num_frames={FLAGS.num_frames}: their clip cutting reads "
                          f"{spec.min_frames} frames of each video (16-frame clips at fixed "
                          "starts), so it must be at least that")
    if FLAGS.crop_size and FLAGS.crop_size < 8:
        raise ConfigError(f"--crop_size={FLAGS.crop_size}: must be at least 8")
    return spec, root


# ------------------------------------------------------------ importing their code ----

def _import_their(root: str, name: str, paths=()):
    """Their module `name`, with `root` (and `paths` under it) first on sys.path; refused where
    another module of that name shadows theirs."""
    for path in reversed([root] + [os.path.join(root, p) for p in paths]):
        if path not in sys.path:
            sys.path.insert(0, path)
    module = importlib.import_module(name)
    where = getattr(module, "__file__", None)
    if where is None or not os.path.abspath(where).startswith(root + os.sep):
        raise ConfigError(f"`import {name}` found {where}, not their file under {root}: another "
                          f"module named {name.split('.')[0]} shadows it")
    return module


def _import_file(root: str, path: str, name: str):
    """Their file `path` as module `name`, by path (their `tools` package's __init__ imports the
    whole runner, with its data pipeline's packages)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _stand_ins(wanted):
    """For each (module name, maker) of `wanted` whose real module cannot be imported, a
    stand-in in sys.modules while their files load (they import these names and never use them
    on the path benchmarked); yields the names stood in for."""
    added = []
    for name, make in wanted:
        try:
            importlib.import_module(name)
        except Exception:  # not installed, or (OpenCV 5's cv2.cv2) no longer there
            for part in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
                del sys.modules[part]
            for module in make():
                sys.modules[module.__name__] = module
                added.append(module.__name__)
    try:
        yield added
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _timm_stand_in():
    """FineDiving's models/vit_decoder.py: `from timm.models.layers import DropPath,
    trunc_normal_`. DropPath is built only for drop_path > 0 (TSA: 0) and trunc_normal_ is not
    called."""
    import torch

    class DropPath:
        def __init__(self, *args, **kwargs):
            raise NotImplementedError("timm is not installed: DropPath (drop_path > 0) needs it")

    timm, models, layers = (types.ModuleType(n) for n in
                            ("timm", "timm.models", "timm.models.layers"))
    layers.DropPath, layers.trunc_normal_ = DropPath, torch.nn.init.trunc_normal_
    timm.models, models.layers = models, layers
    return timm, models, layers


def _cv2_stand_in():
    """FineDiving's utils/misc.py: `import cv2.cv2` (unused; OpenCV >= 4.6 has no cv2.cv2)."""
    try:
        importlib.import_module("cv2")
        parent = ()
    except Exception:
        parent = (types.ModuleType("cv2"),)
    return parent + (types.ModuleType("cv2.cv2"),)


def _their_config(path: str) -> dict:
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"reading their {os.path.basename(path)} needs PyYAML (their parser "
                          "reads it with yaml): pip install pyyaml")
    with open(path) as f:
        return yaml.load(f, Loader=yaml.Loader)


def _git_commit(root: str):
    try:
        proc = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _clipped_avg_pool(pool):
    """Smoke sizes only (--crop_size below their pooling window): their I3D's last AvgPool3d
    (stride 1) with its window clipped to the final map, instead of failing on it."""
    import torch

    class ClippedAvgPool3d(torch.nn.Module):
        def __init__(self, window):
            super().__init__()
            self.window = tuple(window)

        def forward(self, x):
            window = tuple(min(w, s) for w, s in zip(self.window, x.shape[2:]))
            return torch.nn.functional.avg_pool3d(x, window, stride=1)

    window = pool.kernel_size
    return ClippedAvgPool3d(window if isinstance(window, (tuple, list)) else (window,) * 3)


def _float32_outputs(module):
    """`module` whose output tensors (or lists of them) are cast to float32."""
    import torch

    def cast(value):
        if isinstance(value, (list, tuple)):
            return type(value)(cast(v) for v in value)
        return value.float()

    class Float32Outputs(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args, **kwargs):
            return cast(self.inner(*args, **kwargs))

    return Float32Outputs(module)


# ------------------------------------------------------------------------ methods ----

class Method:
    """One method's modules, fixed host batches and steps. `train_step` and `inference_step`
    run one step each; `train_batch` / `inference_batch` samples per step."""

    def __init__(self, root, device, precision, crop, frames, seed, patch_pool):
        import torch
        self.torch, self.root, self.device = torch, root, device
        self.crop, self.frames, self.seed, self.patch_pool = crop, frames, seed, patch_pool
        self.autocast = (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                         if precision == "bf16" else contextlib.nullcontext())
        self.generator = torch.Generator().manual_seed(seed)
        self.stand_ins = []

    def _video(self, batch, frames_first=False):
        """A batch of videos as their DataLoader gives it: MUSDL's dataset stacks frames
        [N, T, C, H, W]; CoRe's and FineDiving's ClipToTensor gives [N, C, T, H, W]."""
        shape = ((batch, self.frames, 3, self.crop, self.crop) if frames_first else
                 (batch, 3, self.frames, self.crop, self.crop))
        return self.torch.randn(*shape, generator=self.generator)

    def _uniform(self, shape, low, high):
        return self.torch.empty(*shape).uniform_(low, high, generator=self.generator)

    def _clip_pool(self, i3d):
        if self.patch_pool:
            i3d.avg_pool = _clipped_avg_pool(i3d.avg_pool)

    def _to_device(self, value):
        if isinstance(value, (list, tuple)):
            return [self._to_device(v) for v in value]
        return value.to(self.device)

    def parameters(self) -> int:
        return sum(p.numel() for part in self.parts for p in part.parameters())


class Usdl(Method):
    """USDL / MUSDL as their MTL-AQA/main.py trains and tests them."""

    def __init__(self, multi_judge: bool, root, device, precision, crop, frames, seed,
                 patch_pool, train_batch, test_batch):
        super().__init__(root, device, precision, crop, frames, seed, patch_pool)
        torch = self.torch
        # MTL-AQA/ holds their `opts` (constants; models/evaluator.py does `from opts import *`)
        # and `config` (argparse defaults); the root holds the `models` package.
        self.opts = _import_their(root, "opts", ["MTL-AQA"])
        config = _import_their(root, "config", ["MTL-AQA"])
        i3d_module = _import_their(root, "models.i3d")
        evaluator_module = _import_their(root, "models.evaluator")
        self.type = "MUSDL" if multi_judge else "USDL"
        # MTL-AQA/run.sh: `--type USDL --lr 1e-4 --weight_decay 0`, `--type MUSDL --lr 1e-4
        # --weight_decay 1e-5`; the rest (batch sizes 4 / 20, std 5) are config.py's defaults.
        self.args = config.get_parser().parse_args(
            ["--type", self.type, "--lr", "1e-4",
             "--weight_decay", "1e-5" if multi_judge else "0"])
        self.train_batch = train_batch or self.args.train_batch_size
        self.inference_batch = test_batch or self.args.test_batch_size
        opts = self.opts
        # main.py get_models: InceptionI3d() (their checkpoint not loaded: random weights) and
        # Evaluator(output_dim[type], type[, num_judges]).
        self.i3d = i3d_module.InceptionI3d()
        self._clip_pool(self.i3d)
        if multi_judge:
            self.evaluator = evaluator_module.Evaluator(output_dim=opts.output_dim["MUSDL"],
                                                        model_type="MUSDL",
                                                        num_judges=opts.num_judges)
        else:
            self.evaluator = evaluator_module.Evaluator(output_dim=opts.output_dim["USDL"],
                                                        model_type="USDL")
        self.parts = [self.i3d, self.evaluator]
        for part in self.parts:
            part.to(device)
        # main.py main(): nn.KLDivLoss() and one Adam over I3D and evaluator, lr and weight
        # decay from the command line (one learning rate for both).
        self.criterion = torch.nn.KLDivLoss()
        self.optimizer = torch.optim.Adam([*self.i3d.parameters()] +
                                          [*self.evaluator.parameters()],
                                          lr=self.args.lr, weight_decay=self.args.weight_decay)
        self.train_data = self._batch(self.train_batch)
        self.test_data = self._batch(self.inference_batch)
        self.pred_scores = []

    def _soft(self, centres, bins: int, top: float):
        """dataset.py proc_label: a normal pdf (std args.std) over the bins at the normalised
        score, divided by its sum."""
        torch = self.torch
        x = torch.arange(bins, dtype=torch.float32)
        loc = centres.unsqueeze(-1) * (bins - 1) / top
        pdf = torch.exp(-0.5 * ((x - loc) / self.args.std) ** 2)
        return pdf / pdf.sum(-1, keepdim=True)

    def _batch(self, batch):
        opts = self.opts
        final = self._uniform((batch,), 20.0, opts.label_max)
        judges = self._uniform((batch, opts.num_judges), 4.0, opts.judge_max)
        return {"video": self._video(batch, frames_first=True),
                "final_score": final, "difficulty": self._uniform((batch,), 1.5, 3.8),
                "soft_label": self._soft(final, opts.output_dim["USDL"], opts.label_max),
                "soft_judge_scores": self._soft(judges, opts.output_dim["MUSDL"],
                                                opts.judge_max)}

    def _forward(self, data):
        """main.py's clip loop: videos [N, T, C, H, W] to the device, transposed to
        [N, C, T, H, W] (theirs: `videos.transpose_(1, 2)` on the copy `.cuda()` made; here a
        transposed view, the same strides, since `.to("cpu")` of the fixed host batch is the
        batch itself); I3D on 9 clips at 10 * i and on the last 16 frames, into
        torch.empty(N, 10, feature_dim); the mean to the evaluator."""
        torch = self.torch
        videos = data["video"].to(self.device).transpose(1, 2)
        batch_size = videos.shape[0]
        clip_feats = torch.empty(batch_size, 10, self.opts.feature_dim, device=self.device)
        for i in range(9):
            clip_feats[:, i] = self.i3d(videos[:, :, 10 * i:10 * i + 16, :, :]).squeeze(2)
        clip_feats[:, 9] = self.i3d(videos[:, :, -16:, :, :]).squeeze(2)
        return self.evaluator(clip_feats.mean(1))

    def _score(self, probs, data):
        """main.py compute_score."""
        torch, opts = self.torch, self.opts
        if self.type == "USDL":
            return probs.argmax(dim=-1) * (opts.label_max / (opts.output_dim["USDL"] - 1))
        judge_scores_pred = torch.stack([prob.argmax(dim=-1) * opts.judge_max /
                                         (opts.output_dim["MUSDL"] - 1) for prob in probs],
                                        dim=1).sort()[0]
        return torch.sum(judge_scores_pred[:, 2:5], dim=1) * data["difficulty"].to(self.device)

    def _loss(self, probs, data):
        """main.py compute_loss."""
        torch = self.torch
        if self.type == "USDL":
            return self.criterion(torch.log(probs), data["soft_label"].to(self.device))
        return sum([self.criterion(torch.log(probs[i]),
                                   data["soft_judge_scores"][:, i].to(self.device))
                    for i in range(self.opts.num_judges)])

    def train_step(self):
        data = self.train_data
        with self.autocast():
            probs = self._forward(data)
            preds = self._score(probs, data)
            self.pred_scores.extend([i.item() for i in preds])
            loss = self._loss(probs, data)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def inference_step(self):
        data = self.test_data
        with self.torch.no_grad(), self.autocast():
            probs = self._forward(data)
            preds = self._score(probs, data)
            self.pred_scores.extend([i.item() for i in preds])
            return [p.cpu() for p in (probs if isinstance(probs, list) else [probs])]

    def train(self, training: bool):
        for part in self.parts:
            part.train(training)

    def describe(self):
        opts = self.opts
        heads = ({"judges": opts.num_judges, "bins": opts.output_dim["MUSDL"]}
                 if self.type == "MUSDL" else {"bins": opts.output_dim["USDL"]})
        return {"model": f"{self.type} (I3D + evaluator)", "heads": heads,
                "files": ["models/i3d.py InceptionI3d", "models/evaluator.py Evaluator",
                          "MTL-AQA/opts.py", "MTL-AQA/config.py get_parser"],
                "follows": ["MTL-AQA/main.py (clip loop, compute_score, compute_loss, Adam)",
                            "MTL-AQA/run.sh (lr, weight_decay)",
                            "MTL-AQA/dataset.py (frames, Gaussian targets)"],
                "optimizer": {"name": "Adam", "lr": self.args.lr,
                              "weight_decay": self.args.weight_decay},
                "loss": "KLDivLoss(log softmax outputs, Gaussian targets)"
                        + (" summed over the judges" if self.type == "MUSDL" else ""),
                "clip_starts": [10 * i for i in range(9)] + [self.frames - CLIP_LENGTH]}


class PairMethod(Method):
    """CoRe and TSA: their runners keep the I3D's BatchNorm in eval mode while training
    (`fix_bn`, utils/misc.py of both repositories)."""

    def _setup(self, args, models, voters, train_batch, test_batch):
        """Their config `args` (voters and batch sizes overridden where given) and their
        I3D_backbone(I3D_class=400), random weights (both builders build it so)."""
        self.paper_voters, args.voter_number = args.voter_number, voters or args.voter_number
        self.args = args
        self.train_batch = train_batch or args.bs_train
        self.inference_batch = test_batch or args.bs_test
        self.base_model = models.I3D_backbone(I3D_class=400)
        self._clip_pool(self.base_model.backbone)

    def train(self, training: bool):
        for part in self.parts:
            part.train(training)
        if training and self.args.fix_bn:
            self.base_model.apply(self.misc.fix_bn)  # runner.py: BatchNorm kept in eval mode


class Core(PairMethod):
    """CoRe (MTL-AQA) through their tools/helper.py, as their tools/runner.py calls it."""

    def __init__(self, root, device, precision, crop, frames, seed, patch_pool, train_batch,
                 test_batch, voters):
        super().__init__(root, device, precision, crop, frames, seed, patch_pool)
        torch = self.torch
        models = _import_their(root, "models")  # its __init__: I3D_backbone, RegressTree
        group_helper = _import_their(root, "utils.Group_helper")
        self.misc = _import_their(root, "utils.misc")
        self.helper = _import_file(root, "tools/helper.py", "core_tools_helper")
        # configs/MTL_CoRe.yaml, with utils/parser.py's --benchmark MTL and --fix_bn default
        # (True); main.py sets score_range 100 only without usingDD (the config has it on).
        args = types.SimpleNamespace(**_their_config(os.path.join(root, "configs",
                                                                  "MTL_CoRe.yaml")))
        args.benchmark, args.fix_bn = "MTL", True
        if not args.usingDD:
            args.score_range = 100
        # tools/builder.py model_builder: I3D_backbone(I3D_class=400) (their checkpoint not
        # loaded), RegressTree(2 * 1024 + 1, 256, RT_depth).
        self._setup(args, models, voters, train_batch, test_batch)
        self.regressor = models.RegressTree(in_channel=2 * self.base_model.get_feature_dim() + 1,
                                            hidden_channel=256, depth=args.RT_depth)
        self.parts = [self.base_model, self.regressor]
        for part in self.parts:
            part.to(device)
        # Their helper hands the tree's outputs to numpy (Group_helper.inference), which has no
        # bfloat16: under bf16 the tree's outputs are cast to float32 (as Keras's mixed
        # precision keeps a model's outputs in float32).
        self.tree = _float32_outputs(self.regressor) if precision == "bf16" else self.regressor
        # tools/builder.py build_group: Group_helper(dataset_train.delta(), RT_depth,
        # Symmetrical=True, Max=score_range, Min=0); delta() is the |difference| of the
        # completeness (score / difficulty) of the training pairs of one difficulty: here of
        # 300 random completenesses.
        completeness = self._uniform((300,), 5.0, 30.0).tolist()
        deltas = [abs(a - b) for i, a in enumerate(completeness) for b in completeness[i + 1:]]
        self.group = group_helper.Group_helper(deltas, args.RT_depth, Symmetrical=True,
                                               Max=args.score_range, Min=0)
        # tools/builder.py build_opti_sche: Adam, the backbone at base_lr * lr_factor, the tree
        # at base_lr, weight_decay from the config.
        self.optimizer = torch.optim.Adam([
            {"params": self.base_model.parameters(), "lr": args.base_lr * args.lr_factor},
            {"params": self.regressor.parameters()}], lr=args.base_lr,
            weight_decay=args.weight_decay)
        # tools/runner.py run_net: nn.MSELoss(), nn.NLLLoss().
        self.mse, self.nll = torch.nn.MSELoss(), torch.nn.NLLLoss()
        self.train_data = self._pair(self.train_batch)
        self.test_data = self._voters(self.inference_batch)
        self.num_iter = 0
        self.pred_scores = []

    def _labels(self, batch):
        return self._uniform((batch, 1), 5.0, 30.0)  # completeness: final_score / difficulty

    def _pair(self, batch):
        """runner.py run_net's batch: query video, its completeness, exemplar video and
        completeness, the query's difficulty."""
        return {"video_1": self._video(batch), "label_1": self._labels(batch),
                "video_2": self._video(batch), "label_2": self._labels(batch),
                "diff": self._uniform((batch, 1), 1.5, 3.8)}

    def _voters(self, batch):
        """runner.py test's batch: the query and voter_number exemplars of its difficulty."""
        voters = self.args.voter_number
        return {"video_1": self._video(batch), "diff": self._uniform((batch, 1), 1.5, 3.8),
                "video_2_list": [self._video(batch) for _ in range(voters)],
                "label_2_list": [self._labels(batch) for _ in range(voters)]}

    def train_step(self):
        """runner.py run_net's loop body: the batch to the device, opti_flag every
        step_per_update iterations, then their network_forward_train (forward, losses,
        backward, the optimizer step where opti_flag, the scores on the host). batch_idx 1:
        their progress line (every print_freq batches) is not printed."""
        data = {k: self._to_device(v) for k, v in self.train_data.items()}
        self.num_iter += 1
        opti_flag = self.num_iter == self.args.step_per_update
        if opti_flag:
            self.num_iter = 0
        with _sibling._cuda_calls_stay(self.device), self.autocast():
            self.helper.network_forward_train(
                self.base_model, self.tree, self.pred_scores, data["video_1"],
                data["label_1"], data["video_2"], data["label_2"], data["diff"], self.group,
                self.mse, self.nll, self.optimizer, opti_flag, 0, 1, 1, self.args)

    def inference_step(self):
        """runner.py test's loop body under no_grad: the query and its exemplars to the device,
        their network_forward_test (the query against each exemplar, scores averaged)."""
        data = {k: self._to_device(v) for k, v in self.test_data.items()}
        with self.torch.no_grad(), _sibling._cuda_calls_stay(self.device), self.autocast():
            self.helper.network_forward_test(
                self.base_model, self.tree, self.pred_scores, data["video_1"],
                data["video_2_list"], data["label_2_list"], data["diff"], self.group, self.args)

    def describe(self):
        args = self.args
        return {"model": "CoRe (I3D + regression tree)",
                "heads": {"tree_depth": args.RT_depth, "score_range": args.score_range,
                          "voters": args.voter_number, "step_per_update": args.step_per_update},
                "files": ["models/Backbone.py I3D_backbone", "models/i3d.py I3D",
                          "models/RegressTree.py RegressTree", "utils/Group_helper.py",
                          "utils/misc.py fix_bn",
                          "tools/helper.py network_forward_train, network_forward_test",
                          "configs/MTL_CoRe.yaml"],
                "follows": ["tools/builder.py (model sizes, group, Adam)",
                            "tools/runner.py (batch, losses, fix_bn, step_per_update)"],
                "optimizer": {"name": "Adam", "lr_backbone": args.base_lr * args.lr_factor,
                              "lr": args.base_lr, "weight_decay": args.weight_decay},
                "loss": "NLL of the leaf (group) + MSE of the position inside it, both "
                        "directions of the pair",
                "clip_starts": [0, 10, 20, 30, 40, 50, 60, 70, 80, 86]}


class Tsa(PairMethod):
    """TSA (FineDiving) through their tools/helper.py, as their tools/runner.py calls it."""

    def __init__(self, root, device, precision, crop, frames, seed, patch_pool, train_batch,
                 test_batch, voters):
        super().__init__(root, device, precision, crop, frames, seed, patch_pool)
        torch = self.torch
        with _stand_ins([("timm.models.layers", _timm_stand_in),
                         ("cv2.cv2", _cv2_stand_in)]) as stood_in:
            models = _import_their(root, "models")  # I3D_backbone, decoder_fuser, MLP_score,
            ps = _import_their(root, "models.PS")  # PSNet
            self.misc = _import_their(root, "utils.misc")
            self.helper = _import_file(root, "tools/helper.py", "finediving_tools_helper")
        self.stand_ins = stood_in
        # FineDiving_TSA.yaml, with utils/parser.py's --fix_bn default (True).
        args = types.SimpleNamespace(**_their_config(os.path.join(root, "FineDiving_TSA.yaml")))
        args.fix_bn = True
        # tools/builder.py model_builder (their checkpoint not loaded).
        self._setup(args, models, voters, train_batch, test_batch)
        self.psnet = ps.PSNet(n_channels=9)
        self.decoder = models.decoder_fuser(dim=64, num_heads=8, num_layers=3)
        self.regressor_delta = models.MLP_score(in_channel=64, out_channel=1)
        self.parts = [self.base_model, self.psnet, self.decoder, self.regressor_delta]
        for part in self.parts:
            part.to(device)
        # tools/builder.py build_opti_sche: Adam, the backbone at base_lr * lr_factor, the
        # rest at base_lr.
        self.optimizer = torch.optim.Adam([
            {"params": self.base_model.parameters(), "lr": args.base_lr * args.lr_factor},
            {"params": self.psnet.parameters()}, {"params": self.decoder.parameters()},
            {"params": self.regressor_delta.parameters()}], lr=args.base_lr,
            weight_decay=args.weight_decay)
        # tools/runner.py train_net: nn.MSELoss(), nn.BCELoss().
        self.mse, self.bce = torch.nn.MSELoss(), torch.nn.BCELoss()
        if precision == "bf16":
            self.bce = _bf16_bce(torch, device)
        self.train_data = self._pair(self.train_batch)
        self.test_data = self._voters(self.inference_batch)
        self.pred_scores, self.tious = [], ([], [])

    def _transits(self, batch):
        """datasets/FineDiving_Pair.py: [transitions[1] - 1, transitions[-1] - 1], and runner.py
        adds 1: the frames (of 96) where the second and the last step start. Their helper
        indexes PSNet's 96 rows by them and cuts [:st], [st:ed], [ed:]: 1 <= st < 48 <= ed <
        96 here."""
        torch = self.torch
        st = torch.randint(1, 48, (batch, 1), generator=self.generator)
        ed = torch.randint(48, 96, (batch, 1), generator=self.generator)
        return torch.cat([st, ed], 1).float()

    def _scores(self, batch):
        return self._uniform((batch, 1), 20.0, 100.0)

    def _pair(self, batch):
        return {"video_1": self._video(batch), "label_1_score": self._scores(batch),
                "video_2": self._video(batch), "label_2_score": self._scores(batch),
                "label_1_tas": self._transits(batch), "label_2_tas": self._transits(batch)}

    def _voters(self, batch):
        voters = self.args.voter_number
        return {"video_1": self._video(batch), "label_1_tas": self._transits(batch),
                "video_2_list": [self._video(batch) for _ in range(voters)],
                "label_2_tas_list": [self._transits(batch) for _ in range(voters)],
                "label_2_score_list": [self._scores(batch) for _ in range(voters)]}

    def train_step(self):
        """runner.py train_net's loop body: the batch to the device, their
        network_forward_train (zero_grad, forward, losses, backward, optimizer step, scores and
        tIoU on the host). Epoch 0: the first prob_tas_threshold of training, which segments
        with the given transitions (later epochs: the predicted ones, the same operations).
        batch_idx 1: their progress line is not printed."""
        d = {k: self._to_device(v) for k, v in self.train_data.items()}
        with _sibling._cuda_calls_stay(self.device), self.autocast():
            self.helper.network_forward_train(
                self.base_model, self.psnet, self.decoder, self.regressor_delta,
                self.pred_scores, d["video_1"], d["label_1_score"], d["video_2"],
                d["label_2_score"], self.mse, self.optimizer, True, 0, 1, 1, self.args,
                d["label_1_tas"], d["label_2_tas"], self.bce, *self.tious)

    def inference_step(self):
        """runner.py test's loop body under no_grad: their network_forward_test (the query
        against each of voter_number exemplars)."""
        d = {k: self._to_device(v) for k, v in self.test_data.items()}
        with self.torch.no_grad(), _sibling._cuda_calls_stay(self.device), self.autocast():
            self.helper.network_forward_test(
                self.base_model, self.psnet, self.decoder, self.regressor_delta,
                self.pred_scores, d["video_1"], d["video_2_list"], d["label_2_score_list"],
                self.args, d["label_1_tas"], d["label_2_tas_list"], *self.tious)

    def describe(self):
        args = self.args
        return {"model": "TSA (I3D + PSNet + decoder_fuser + MLP_score)",
                "heads": {"fix_size": args.fix_size, "step_num": args.step_num,
                          "decoder": {"dim": 64, "heads": 8, "layers": 3},
                          "voters": args.voter_number},
                "files": ["models/Backbone.py I3D_backbone", "models/i3d.py I3D",
                          "models/PS.py PSNet", "models/PS_parts.py",
                          "models/vit_decoder.py decoder_fuser", "models/MLP.py MLP_score",
                          "utils/misc.py (fix_bn, seg_pool_1d/3d, tIoU)",
                          "tools/helper.py network_forward_train, network_forward_test",
                          "FineDiving_TSA.yaml"],
                "follows": ["tools/builder.py (model sizes, Adam)",
                            "tools/runner.py (batch, losses, fix_bn)",
                            "datasets/FineDiving_Pair.py (96 frames, transitions)"],
                "optimizer": {"name": "Adam", "lr_backbone": args.base_lr * args.lr_factor,
                              "lr": args.base_lr, "weight_decay": args.weight_decay},
                "loss": "BCE on the transitions + MSE on the relative score, both directions",
                "clip_starts": list(range(0, 90, 10))}


def _bf16_bce(torch, device):
    """Their nn.BCELoss under bf16. On CUDA, torch refuses BCELoss under autocast ("unsafe to
    autocast"): it runs in float32 outside autocast. On the CPU (where autocast accepts it),
    non-finite predictions are mapped to 0.5 first: oneDNN's bfloat16 Conv3d weight gradients
    come out non-finite now and then on some CPUs (seen with torch 2.13 on an AMD EPYC, family
    25 model 17), the weights then turn NaN, and BCELoss refuses NaN input, which would end the
    timing; the JSON's nonfinite_parameters_after_training tells when it happened."""

    class Bce(torch.nn.Module):
        def forward(self, p, target):
            if device.type == "cuda":
                with torch.autocast(device_type="cuda", enabled=False):
                    return torch.nn.functional.binary_cross_entropy(p.float(), target.float())
            p = torch.nan_to_num(p, nan=0.5, posinf=1.0, neginf=0.0)
            return torch.nn.functional.binary_cross_entropy(p, target)

    return Bce()


def _build(method, spec, root, device, crop, frames, patch_pool):
    batch = FLAGS.batch_size
    common = dict(root=root, device=device, precision=FLAGS.precision, crop=crop,
                  frames=frames, seed=FLAGS.seed, patch_pool=patch_pool, train_batch=batch,
                  test_batch=batch)
    if method in ("usdl", "musdl"):
        return Usdl(method == "musdl", **common)
    return {"core": Core, "tsa": Tsa}[method](voters=FLAGS.voters, **common)


# --------------------------------------------------------------------------- main ----

def _print_results(results):
    def fmt(v):
        return "n/a" if v is None else f"{v:.4g}"

    print(f"\nReference benchmark: {results['model']} ({results['framework']}), input "
          f"{results['input']}{'' if results['paper_size'] else ' (not the paper size)'}, "
          f"batch {results['batch_size']} (inference {results['inference_batch_size']}), "
          f"precision {results['precision']}, device {results['device']}, "
          f"{results['threads']} threads, {results['machine']}")
    print(f"  {'measurement':<14}{'samples/s':>12}  one step")
    for key in ("train", "inference"):
        print(f"  {key:<14}{fmt(results[key + '_samples_per_s']):>12}  {results['steps'][key]}")
    if results["nonfinite_parameters_after_training"]:
        print("  (some weights were NaN or infinite after the training steps; inference ran "
              "on the initial weights; see tools/README.md)")
    if results["precision"] == "bf16" and results["cpu_bf16_kernels"] is False:
        print("  (this CPU has no oneDNN bfloat16 kernels: torch runs bfloat16 Conv3d on slow "
              "fallback kernels)")


STEPS = {
    "usdl": ("I3D on 10 clips, evaluator, scores to the host, KL loss, backward, Adam",
             "I3D on 10 clips, evaluator; distributions and scores to the host"),
    "core": ("their network_forward_train: query + exemplar, tree, NLL + MSE, backward, "
             "Adam every step_per_update steps",
             "their network_forward_test: the query against each voter's exemplar; "
             "samples = queries"),
    "tsa": ("their network_forward_train: query + exemplar, PSNet, decoder, MLP, BCE + MSE, "
            "backward, Adam",
            "their network_forward_test: the query against each voter's exemplar; "
            "samples = queries"),
}
STEPS["musdl"] = STEPS["usdl"]


def main(argv):
    del argv
    spec, root = _check_flags()
    method_name = FLAGS.method
    torch = _sibling._import_torch(FLAGS.device, FLAGS.precision)
    threads = FLAGS.threads or _sibling._usable_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(FLAGS.seed)
    device = torch.device("cuda:0" if FLAGS.device == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # MUSDL's utils.py init_seed: deterministic, no benchmark; CoRe's and FineDiving's
        # tools/runner.py: cudnn.benchmark = True.
        deterministic = method_name in ("usdl", "musdl")
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    # Their MTL-AQA/main.py uses nn.KLDivLoss() with its default reduction, of which torch
    # warns at each call; the loss is theirs as written.
    warnings.filterwarnings("ignore", message="reduction: 'mean' divides the total loss")

    crop = FLAGS.crop_size or spec.crop
    frames = FLAGS.num_frames or spec.frames
    patch_pool = crop < 32 * (POOL_WINDOW[method_name] - 1) + 1
    method = _build(method_name, spec, root, device, crop, frames, patch_pool)
    paper_voters = getattr(method, "paper_voters", None)  # core, tsa: their voter_number
    paper_size = (crop == spec.crop and frames == spec.frames
                  and (paper_voters is None or paper_voters == method.args.voter_number))
    steps, warmup = FLAGS.benchmark_steps, FLAGS.warmup_steps
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    description = method.describe()
    results = {
        "model": description.pop("model"),
        "method": method_name,
        "framework": f"PyTorch {torch.__version__}",
        "reference": {"code": f"github.com/{spec.repo}", "paper": spec.title,
                      "reference_dir": root, "commit": _git_commit(root),
                      "files": description.pop("files"), "follows": description.pop("follows"),
                      "stand_ins": method.stand_ins},
        "backbone": "i3d",
        "precision": FLAGS.precision, "batch_size": method.train_batch,
        "inference_batch_size": method.inference_batch, "jit_compile": False,
        "input": [spec.clips, CLIP_LENGTH, crop, crop, 3],
        "video_frames": frames,
        "paper_size": paper_size,
        "final_pool_clipped": patch_pool,
        "machine": f"{_sibling._cpu_description()}, {os.cpu_count()} cores, GPUs: {gpus}"
                   + (f" ({torch.cuda.get_device_name(0)})" if gpus else ""),
        "device": FLAGS.device, "threads": threads,
        "cpu_bf16_kernels": _sibling._cpu_bf16_kernels(torch) if device.type == "cpu" else None,
        "warmup_steps": warmup, "benchmark_steps": steps,
        "input_pipeline_samples_per_s": None,
        "input_pipeline_note": "not measured: their model alone, on a fixed batch",
        "parameters": method.parameters(),
        "steps": dict(zip(("train", "inference"), STEPS[method_name])),
        "train_samples_per_s": None, "inference_samples_per_s": None,
        "nonfinite_parameters_after_training": None,
        **description,
    }

    if "train" in FLAGS.measure:
        # Inference runs on the initial random weights: restored after the training steps, so
        # that its timing does not depend on what the training steps did to them (_bf16_bce).
        initial = [copy.deepcopy(part.state_dict()) for part in method.parts]
        method.train(True)
        seconds = _sibling._timed(method.train_step, warmup, steps, synchronize)
        results["train_samples_per_s"] = method.train_batch * steps / seconds
        results["nonfinite_parameters_after_training"] = not all(
            bool(torch.isfinite(p).all()) for part in method.parts for p in part.parameters())
        for part, state in zip(method.parts, initial):
            part.load_state_dict(state)
        del initial
    if "inference" in FLAGS.measure:
        method.train(False)
        seconds = _sibling._timed(method.inference_step, warmup, steps, synchronize)
        results["inference_samples_per_s"] = method.inference_batch * steps / seconds

    _print_results(results)
    output = (FLAGS.benchmark_output
              or f"benchmark_reference_{method_name}_{FLAGS.precision}.json")
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"Written to {output}")


if __name__ == "__main__":
    _sibling.run(main)

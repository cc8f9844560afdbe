"""The web page of `aqa_tf.demo`: drop a video, see its score, sub-actions, commentary and clip
plot; scan a long video for its dives.

The page is a Gradio app (`build`). What it shows comes from `DemoModel`, which scores with the
library calls `aqa_tf.predict` makes (`predict_lib.read_video`, `score_dive`, `scan`; the plots
of `aqa_tf.metrics.report`), so a score on the page is the score `aqa_tf.predict` prints. The
model is loaded once; requests wait in Gradio's queue and run one at a time.
"""

import os
import tempfile
from typing import Dict, List, Optional

from aqa_tf.metrics import report as reporting
from aqa_tf.serving import contract
from aqa_tf.serving import predict_lib
from aqa_tf.serving.scorer import Scorer

TITLE = "aqa-tf: score a dive"


def example_videos(folder: str, count: int, meta: Dict) -> List[str]:
    """`count` synthetic test dives (the quickstart's renderer, seed 0) as mp4 files in
    `folder`, at twice the model's stored size and at its frame rate, each ending at the
    dive's annotated end: what the page offers as examples."""
    from aqa_tf.data import synthetic
    from aqa_tf.data import video as video_lib
    height, width = 2 * int(meta["stored_height"]), 2 * int(meta["stored_width"])
    frames = int(meta["window_length"]) + 6
    paths = []
    for index in range(count):
        path = os.path.join(folder, f"synthetic_dive_{index + 1}.mp4")
        if not os.path.exists(path):
            sample = synthetic.make_sample("test", index, 0, frames, height, width)
            video_lib.write_video(path, sample.frames[:sample.end_index + 1],
                                  float(meta["frame_rate"]))
        paths.append(path)
    return paths


def _export_flags(path: str) -> Dict[str, str]:
    """`--name=value` lines of the export's `assets.extra/flags.txt` (the training run's)."""
    flags_file = os.path.join(path, contract.ASSETS_EXTRA, "flags.txt")
    values = {}
    if os.path.isfile(flags_file):
        with open(flags_file) as f:
            for line in f:
                if line.startswith("--") and "=" in line:
                    name, _, value = line[2:].strip().partition("=")
                    values[name] = value
    return values


def model_card(scorer: Scorer, model_path: str = "") -> str:
    """Markdown: what the model is, what it was trained on, how a video is prepared."""
    meta = scorer.meta
    flags = _export_flags(model_path) if model_path and os.path.isdir(model_path) else {}
    lines = [f"**Model**: {scorer.description}"]
    if flags.get("experiment_name") or flags.get("backbone"):
        lines.append(f"**Trained as**: {flags.get('experiment_name', '?')} "
                     f"(backbone {flags.get('backbone', '?')}, data {flags.get('data_dir', '?')})")
    if contract.TRAINING_SCORE_RANGE in meta:
        low, high = meta[contract.TRAINING_SCORE_RANGE]
        lines.append(f"**Training scores**: {low:.4g} to {high:.4g}")
    lines.append(f"**Video**: resampled to {float(meta['frame_rate']):.3g} frames/s and "
                 f"{meta['stored_width']}x{meta['stored_height']}; the window is the last "
                 f"{meta['window_length']} frames ({meta['num_clips']} clips of "
                 f"{meta['clip_length']})")
    heads = meta.get("heads") or []
    if heads:
        lines.append(f"**Heads**: {', '.join(heads)}")
    return "  \n".join(lines)


class DemoModel:
    """A scorer and what the page needs of it.

    Args:
      scorer: the model (`predict_lib.open_scorer`, or a TF Serving `client.serving_scorer`).
      model_path: the export's path (for its training flags on the model card), if a file.
      out_dir: folder of the plots (default: a temporary one).
    """

    def __init__(self, scorer: Scorer, model_path: str = "", out_dir: str = ""):
        self.scorer, self.model_path = scorer, model_path
        self.out_dir = out_dir or tempfile.mkdtemp(prefix="aqa_tf_demo_")
        os.makedirs(self.out_dir, exist_ok=True)
        self.class_names = dict(scorer.meta.get("class_names") or {})
        self.uses_difficulty = bool(scorer.meta.get("uses_difficulty"))
        self.actions = list(scorer.meta.get("actions") or []) if scorer.meta.get(
            "uses_action") else []
        # Models that compare the dive with exemplars of its type (CoRe): the types of the bank.
        self.dive_types = list(scorer.meta.get("exemplar_values") or []) if scorer.meta.get(
            "exemplar_match") == "dive_number" else []
        self._count = 0

    def _dive_type(self, dive_type: Optional[str]) -> Optional[str]:
        if not self.dive_types:
            return None
        if not dive_type or not str(dive_type).strip():
            raise predict_lib.ConfigError("this model compares the dive with exemplars of its "
                                          "type: give the dive type (e.g. 407C)")
        return str(dive_type).strip()

    def _action(self, action: Optional[str]) -> Optional[int]:
        if not self.actions:
            return None
        if action not in self.actions:
            raise predict_lib.ConfigError("this model scores several actions, each on its "
                                          "own scale: choose the action")
        return self.actions.index(action) + 1

    def _difficulty(self, difficulty: Optional[float]) -> Optional[float]:
        if self.uses_difficulty and not difficulty:
            raise predict_lib.ConfigError("this model multiplies its prediction by the degree "
                                          "of difficulty: give the difficulty")
        return float(difficulty) if self.uses_difficulty else None

    def _file(self, path: str, suffix: str) -> str:
        self._count += 1
        stem = os.path.splitext(os.path.basename(path))[0]
        return os.path.join(self.out_dir, f"{self._count:04d}_{stem}_{suffix}")

    def score(self, path: str, difficulty: Optional[float] = None,
              action: Optional[str] = None, dive_type: Optional[str] = None) -> Dict:
        """One dive ending at the video's last frame, as `aqa_tf.predict VIDEO` scores it.
        Returns `score_dive`'s result plus `plot` (the clip plot PNG), for models that compare
        with exemplars `exemplars_plot` (predict's `--plot` exemplars PNG), and `summary` (the
        table `aqa_tf.predict` prints)."""
        video = predict_lib.read_video(self.scorer, path, progress=False)
        result = predict_lib.score_dive(self.scorer, path, difficulty=self._difficulty(
            difficulty), progress=False, video=video, action=self._action(action),
            dive_type=self._dive_type(dive_type))
        # Procedure-aware models (TSA): the step plot in place of the clip plot, as predict.
        result["plot"] = (reporting.plot_steps(result, self._file(path, "steps.png"))
                          if "steps" in result else
                          reporting.plot_dive(result, self.scorer.meta,
                                              self._file(path, "clips.png")))
        if "exemplars" in result:
            result["exemplars_plot"] = reporting.plot_exemplars(
                result, self._file(path, "exemplars.png"))
        result["summary"] = reporting.format_result(result)
        return result

    def scan(self, path: str, stride: int = 0, difficulty: Optional[float] = None,
             action: Optional[str] = None, progress: bool = False,
             dive_type: Optional[str] = None) -> Dict:
        """Every window of a long video, as `aqa_tf.predict VIDEO --scan` scans it: `rows`
        (one per window), `plot` (the timeline PNG) and `best` (the best-scoring row)."""
        video = predict_lib.read_video(self.scorer, path, progress=False)
        stride = int(stride) or int(self.scorer.meta["clip_length"])
        rows = predict_lib.scan(self.scorer, path, stride, 8, self._difficulty(difficulty),
                                progress, video=video, action=self._action(action),
                                dive_type=self._dive_type(dive_type))
        plot = reporting.plot_timeline(rows, self._file(path, "timeline.png"),
                                       os.path.basename(path))
        return {"rows": rows, "plot": plot, "best": max(rows, key=lambda r: r["score"])}


def error_message(path: str, error: Exception) -> str:
    """The line `aqa_tf.predict` prints for `error` on `path`, with the upload's temporary
    folder left out (the person knows their file by its name)."""
    line = "error: " + predict_lib.error_message(path, error)
    return line.replace(path, os.path.basename(path))


def score_text(result: Dict) -> str:
    """The score as the page and `aqa_tf.predict` print it (2 decimals), with its interval
    where the model predicts a distribution."""
    text = f"{result['score']:.2f}"
    if "score_interval" in result:
        low, high = result["score_interval"]
        text += f"  ({low:.2f} to {high:.2f})"
    return text


def exemplars_text(result: Dict) -> str:
    """The exemplars a CoRe model compared the dive with (Markdown), as predict lists them."""
    if "exemplars" not in result:
        return ""
    group, count = result["exemplar_group"], len(result["exemplars"])
    lines = [f"**Compared with {count} training dive{'s' * (count != 1)}** "
             + ("of any type (the model knows no dive of this type)" if group == "*"
                else f"of type {group}") + ": the score is the mean of their verdicts.", "",
             "| exemplar | its score | its verdict on this dive |", "| --- | --- | --- |"]
    lines += [f"| {e['key']} | {e['score']:.2f} | {e['verdict']:.2f} |"
              for e in result["exemplars"]]
    if "steps" in result:  # TSA: where the dive gained or lost against them
        lines += ["", "**Steps** (each one's share of the difference to the exemplars)", "",
                  "| step | frames | time (s) | share |", "| --- | --- | --- | --- |"]
        lines += [f"| {s['name']} | {s['first_frame']}-{s['last_frame']} | "
                  f"{s['start_time']:.2f}-{s['end_time']:.2f} | {s['contribution']:+.2f} |"
                  for s in result["steps"]]
    return "\n".join(lines)


def _score_outputs(model: DemoModel, path: Optional[str], difficulty, action,
                   dive_type=None) -> list:
    """The values of the score tab's outputs: status, score, one label per sub-action head,
    commentary, clip plot, exemplars (table and plot; CoRe models). A user's error leaves all
    but the status empty."""
    heads = list(model.class_names)
    if not path:
        return ["Drop a video, or choose an example.", "", *[None] * len(heads), "", None,
                "", None]
    try:
        result = model.score(path, difficulty, action, dive_type)
    except predict_lib.USER_ERRORS as error:
        return [error_message(path, error), "", *[None] * len(heads), "", None, "", None]
    labels = [{label: prob for label, prob in result["sub_actions"].get(head, [])}
              for head in heads]
    status = (f"{os.path.basename(path)}: window {result['window_start_time']:.2f}-"
              f"{result['window_end_time']:.2f} s")
    if result.get("warning"):
        status += f"\nwarning: {result['warning']}"
    return [status, score_text(result), *labels, result.get("commentary", ""), result["plot"],
            exemplars_text(result), result.get("exemplars_plot")]


def _scan_outputs(model: DemoModel, path: Optional[str], stride, difficulty, action,
                  progress: bool, dive_type=None) -> list:
    """The values of the scan tab's outputs: status, timeline plot, best window, table."""
    if not path:
        return ["Drop a long video.", None, "", None]
    try:
        scan = model.scan(path, int(stride or 0), difficulty, action, progress, dive_type)
    except predict_lib.USER_ERRORS as error:
        return [error_message(path, error), None, "", None]
    best = scan["best"]
    columns = list(scan["rows"][0])
    table = [[row[c] for c in columns] for row in scan["rows"]]
    return [f"{os.path.basename(path)}: {len(scan['rows'])} windows", scan["plot"],
            f"**Best window**: {best['start_time']:.2f}-{best['end_time']:.2f} s, score "
            f"{best['score']:.2f}", {"headers": columns, "data": table}]


def build(model: DemoModel, examples: List[str], queue_size: int = 16):
    """The Gradio app (not yet launched): a tab to score a dive, a tab to scan a long video,
    the model card; requests queue and run one at a time."""
    import gradio as gr
    meta = model.scorer.meta
    heads = list(model.class_names)
    writes_text = bool(contract.head_signatures(meta))
    with gr.Blocks(title=TITLE) as page:
        gr.Markdown(f"# {TITLE}\nDrop a video of one dive: the model scores the window that "
                    "ends at its last frame, names what was done and shows how each clip "
                    "counted. Any size and frame rate (resampled as the model was trained).")
        with gr.Accordion("The model", open=False):
            gr.Markdown(model_card(model.scorer, model.model_path), elem_id="model_card")
        with gr.Row(visible=model.uses_difficulty or bool(model.actions)
                    or bool(model.dive_types)):
            difficulty = gr.Number(label="Degree of difficulty", value=None,
                                   visible=model.uses_difficulty, elem_id="difficulty")
            action = gr.Dropdown(label="Action", choices=model.actions,
                                 value=model.actions[0] if model.actions else None,
                                 visible=bool(model.actions))
            # CoRe: the dive is compared with training dives of its type (any other type is
            # compared with dives of every type).
            dive_type = gr.Dropdown(label="Dive type (FINA number)", choices=model.dive_types,
                                    value=model.dive_types[0] if model.dive_types else None,
                                    allow_custom_value=True, visible=bool(model.dive_types),
                                    elem_id="dive_type")
        with gr.Tab("Score a dive"):
            with gr.Row():
                with gr.Column(scale=1) as left:
                    video = gr.File(label="Video of one dive", file_types=["video"],
                                    type="filepath", elem_id="dive_video")
                    status = gr.Textbox(label="Status", elem_id="status", interactive=False,
                                        lines=2)
                with gr.Column(scale=2):
                    score = gr.Textbox(label="Score", elem_id="score", interactive=False)
                    with gr.Row():
                        labels = [gr.Label(label=head.replace("_", " "), num_top_classes=3,
                                           elem_id=f"head_{head}") for head in heads]
                    commentary = gr.Textbox(label="Commentary", elem_id="commentary",
                                            interactive=False, visible=writes_text)
            plot = gr.Image(label="The clips (first, middle, last frame) and their "
                            "contribution", type="filepath", elem_id="clip_plot")
            with gr.Row(visible=bool(model.dive_types) or "exemplar_match" in meta):
                exemplars = gr.Markdown(elem_id="exemplars")
                exemplars_plot = gr.Image(label="The dive beside its closest exemplar, and each "
                                          "exemplar's verdict", type="filepath",
                                          elem_id="exemplars_plot")
            outputs = [status, score, *labels, commentary, plot, exemplars, exemplars_plot]

            def score_fn(path, difficulty_value, action_value, dive_value):
                return _score_outputs(model, path, difficulty_value, action_value, dive_value)

            video.upload(score_fn, [video, difficulty, action, dive_type], outputs)
            if examples:
                with left:  # under the upload, once the outputs exist
                    gr.Examples([[p] for p in examples], inputs=[video], outputs=outputs,
                                fn=lambda path: score_fn(path, None, action.value,
                                                         dive_type.value),
                                run_on_click=True, cache_examples=False,
                                label="Or try a synthetic test dive")
        with gr.Tab("Scan a long video"):
            with gr.Row():
                with gr.Column(scale=1):
                    long_video = gr.File(label="A long video (e.g. a broadcast)",
                                         file_types=["video"], type="filepath",
                                         elem_id="scan_video")
                    stride = gr.Number(label="Frames between windows (0: the clip length)",
                                       value=0, precision=0)
                    scan_button = gr.Button("Scan", variant="primary", elem_id="scan_button")
                    scan_status = gr.Textbox(label="Status", elem_id="scan_status",
                                             interactive=False)
                    best = gr.Markdown(elem_id="best_window")
                with gr.Column(scale=2):
                    timeline = gr.Image(label="Score of each window", type="filepath",
                                        elem_id="timeline")
            table = gr.Dataframe(label="Windows (click a column to sort)", interactive=False,
                                 elem_id="windows")

            def scan_fn(path, stride_value, difficulty_value, action_value, dive_value,
                        progress=gr.Progress(track_tqdm=True)):
                del progress  # Gradio follows the tqdm bars of predict_lib.scan
                return _scan_outputs(model, path, stride_value, difficulty_value,
                                     action_value, progress=True, dive_type=dive_value)

            scan_button.click(scan_fn, [long_video, stride, difficulty, action, dive_type],
                              [scan_status, timeline, best, table])
    page.queue(default_concurrency_limit=1, max_size=queue_size)
    return page

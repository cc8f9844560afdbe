"""Human-facing outputs: the final table, predictions file and scatter plot of a run; the table,
timeline and plots of `aqa_tf.predict`."""

import csv
import json
import os
from typing import Dict, List, Sequence

import numpy as np
from numpy.typing import ArrayLike

from aqa_tf import tasks


def format_report(result: Dict) -> str:
    m = result["metrics"]
    lines = [
        "",
        f"{result['split']} split ({m['num_samples']} samples), "
        f"{result['checkpoint_description']}:",
        f"  {'metric':<28}{'value':>10}",
        f"  {'Spearman rho':<28}{m['spearman']:>10.4f}",
    ]
    if "r_l2" in m:
        lines.append(f"  {'R-l2 (x100)':<28}{m['r_l2']:>10.4f}")
    lines.append(f"  {'MAE (points)':<28}{m['mae']:>10.3f}")
    # Distribution heads (usdl, musdl): calibration of the predicted intervals.
    for key, label in (("coverage_50", "50% interval coverage"),
                       ("coverage_90", "90% interval coverage"),
                       ("mean_score_std", "mean predicted std"),
                       ("judge_mae", "judge MAE (points)")):
        if key in m:
            lines.append(f"  {label:<28}{m[key]:>10.4f}")
    for key in sorted(k for k in m if k.startswith("spearman/")):
        lines.append(f"  {'Spearman ' + key.split('/', 1)[1]:<28}{m[key]:>10.4f}")
    if "spearman_fisher_z" in m:
        lines.append(f"  {'Spearman, Fisher-z average':<28}{m['spearman_fisher_z']:>10.4f}"
                     f"   (plain mean {m['spearman_action_mean']:.4f})")
    for name, rate in result.get("majority_rates", {}).items():
        acc = m.get(f"accuracy/{name}", float("nan"))
        if np.isnan(acc) and np.isnan(rate):
            continue  # neither a head nor labels for it (AQA-7 records have no sub-actions)
        lines.append(f"  {'accuracy ' + name:<28}{acc:>10.4f}   (majority class {rate:.4f})")
    from aqa_tf.metrics.captions import METRIC_NAMES
    for name in METRIC_NAMES:
        key = f"caption/{name}"
        if key in m:
            value = m[key]
            text = f"{value:>10.4f}" if value is not None else (
                f"{'n/a':>10}   ({m.get('caption/meteor_unavailable', '')})")
            lines.append(f"  {'caption ' + name.upper().replace('_', '-'):<28}{text}")
    return "\n".join(lines)


def write_predictions(path: str, keys: Sequence[str], targets: Dict[str, np.ndarray],
                      outputs: Dict[str, np.ndarray]):
    """CSV: sample key, true and predicted score, true and predicted class per sub-action."""
    class_names = [n for n in tasks.CLASS_OUTPUTS if n in outputs and n in targets]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sample_key", "true_score", "pred_score"] +
                        [f"{p}_{n}" for n in class_names for p in ("true", "pred")])
        for i, key in enumerate(keys):
            row = [key, f"{targets['score'][i]:.3f}", f"{outputs['score'][i]:.3f}"]
            for n in class_names:
                row += [int(targets[n][i]), int(np.argmax(outputs[n][i]))]
            writer.writerow(row)


def action_rows(metrics: Dict) -> List[tuple]:
    """(action, Spearman) of every action, then the Fisher-z average and the plain mean."""
    rows = [(k.split("/", 1)[1], float(v)) for k, v in metrics.items()
            if k.startswith("spearman/")]
    return rows + [("Fisher-z average", float(metrics["spearman_fisher_z"])),
                   ("plain mean", float(metrics["spearman_action_mean"]))]


def write_action_table(prefix: str, metrics: Dict, title: str = "") -> Dict[str, str]:
    """The per-action Spearman table of a multi-action evaluation (paper 003, Table 2 style):
    `<prefix>.txt` and a bar chart `<prefix>.png`. Returns their paths."""
    rows = action_rows(metrics)
    with open(f"{prefix}.txt", "w") as f:
        f.write((title + "\n" if title else "") + f"{'action':<22}{'Spearman':>10}\n")
        f.writelines(f"{name:<22}{rho:>10.4f}\n" for name, rho in rows)
    return {"table": f"{prefix}.txt", "plot": plot_action_bars(
        f"{prefix}.png", {title or "model": dict(rows[:-1])}, title)}


def plot_action_bars(path: str, series: Dict[str, Dict[str, float]], title: str = "") -> str:
    """Grouped bars: Spearman per action (x) for each named series (e.g. models or protocols),
    the Fisher-z average last. Returns the PNG path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(a for values in series.values() for a in values))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names) + 2), 4), dpi=100)
    for i, (label, values) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [values.get(n, np.nan) for n in names], width, label=label)
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace("_", "\n") for n in names], fontsize=8)
    ax.set_ylabel("Spearman rho")
    ax.set_ylim(min(-0.1, ax.get_ylim()[0]), 1.0)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def scatter_plot(path: str, true_scores: ArrayLike, pred_scores: ArrayLike, spearman: float,
                 title: str = "") -> str:
    """Predicted vs true score, with the identity line; returns the PNG path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    true_scores, pred_scores = np.asarray(true_scores), np.asarray(pred_scores)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.scatter(true_scores, pred_scores, s=12, alpha=0.7)
    low = float(min(true_scores.min(), pred_scores.min()))
    high = float(max(true_scores.max(), pred_scores.max()))
    ax.plot([low, high], [low, high], "k--", linewidth=1, label="perfect prediction")
    ax.set_xlabel("true score")
    ax.set_ylabel("predicted score")
    ax.set_title(f"{title}\nSpearman rho = {spearman:.4f}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _interval_text(result: Dict) -> str:
    """What follows the score where a distribution head gave its spread, e.g.
    ` (90% interval 65.2-79.0, std 4.1)`; else nothing."""
    if "score_interval" not in result:
        return ""
    low, high = result["score_interval"]
    return f" (90% interval {low:.1f}-{high:.1f}, std {result['score_std']:.1f})"


def format_result(result: Dict) -> str:
    """The table `aqa_tf.predict` prints for one dive."""
    height, width = result["source_size"]
    lines = [f"{result['video']}  ({width}x{height}, {result['source_frame_rate']:.3g} frames/s"
             + (f" read at {result['frame_rate']:.3g}" if abs(
                 result["frame_rate"] - result["source_frame_rate"]) > 1e-3 else "")
             + f"; window {result['window_start_time']:.2f}-{result['window_end_time']:.2f} s)",
             f"  {'score':<16}{result['score']:.2f}" + _interval_text(result)]
    for name, ranked in result["sub_actions"].items():
        best, prob = ranked[0]
        others = "   ".join(f"{label} {p:.2f}" for label, p in ranked[1:])
        lines.append(f"  {name:<16}{best} ({prob:.2f})" + (f"    then: {others}" if others
                                                           else ""))
    for kind, title in (("clip_weights", "clip weights"), ("clip_scores", "clip scores")):
        if kind in result:
            lines.append(f"  {title:<16}" + " ".join(f"{v:.3f}" if kind == "clip_weights"
                                                     else f"{v:.1f}" for v in result[kind]))
    if "judge_scores" in result:
        lines.append(f"  {'judges':<16}" + " ".join(f"{v:.1f}" for v in result["judge_scores"]))
    if "commentary" in result:
        lines.append(f"  {'commentary':<16}{result['commentary']}")
    if "steps" in result:
        lines.append(f"  {'steps':<16}window frames, times and each step's share of the "
                     "difference to the exemplars")
        lines += [f"    {s['name']:<12}frames {s['first_frame']:>3}-{s['last_frame']:<3} "
                  f"{s['start_time']:6.2f}-{s['end_time']:<6.2f} s {s['contribution']:+8.2f}"
                  for s in result["steps"]]
    if "exemplars" in result:
        group = result["exemplar_group"]
        count = len(result["exemplars"])
        lines.append(f"  {'exemplars':<16}{count} training dive{'s' * (count != 1)} of "
                     + ("any type (the bank has none of this one)" if group == "*"
                        else f"group {group}") + "; their score -> the verdict on this one")
        lines += [f"    {e['key']:<40}{e['score']:7.2f} -> {e['verdict']:7.2f}"
                  for e in result["exemplars"]]
    return "\n".join(lines)


def draw_distribution(ax, result: Dict, meta: Dict):
    """Draws a distribution head's prediction on `ax`: USDL's probability per score bin, the
    read-out score and the 90% interval; MUSDL's distribution of each judge over a judge's
    scores, each judge's read-out marked."""
    low, high = meta.get("distribution_range", (0.0, 1.0))
    probabilities = np.asarray(result["score_distribution"], np.float64)
    values = np.linspace(low, high, probabilities.shape[-1])
    if probabilities.ndim == 1:
        step = values[1] - values[0]
        ax.bar(values, probabilities, width=step * 0.9, color="tab:blue", label="predicted")
        if "score_interval" in result:
            ax.axvspan(*result["score_interval"], color="tab:orange", alpha=0.2,
                       label="90% interval")
        ax.axvline(result["score"], color="tab:red", label=f"score {result['score']:.1f}")
        ax.set_xlabel("score")
    else:
        import matplotlib.pyplot as plt
        cmap = plt.get_cmap("tab10")
        judges = result.get("judge_scores", [None] * len(probabilities))
        for j, (row, read_out) in enumerate(zip(probabilities, judges)):
            ax.plot(values, row, drawstyle="steps-mid", color=cmap(j % 10),
                    label=f"judge {j + 1}" + (f": {read_out:.1f}" if read_out is not None
                                              else ""))
            if read_out is not None:
                ax.plot([read_out], [row[int(np.argmin(np.abs(values - read_out)))]], "o",
                        color=cmap(j % 10))
        ax.set_xlabel("a judge's score")
    ax.set_ylabel("probability")
    ax.legend(loc="upper left", fontsize=7, ncol=2 if probabilities.ndim > 1 else 1)


def plot_distribution(result: Dict, meta: Dict, path: str) -> str:
    """PNG of a distribution head's prediction for one video (`draw_distribution`), the score
    and its interval in the title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    draw_distribution(ax, result, meta)
    ax.set_title(f"{os.path.basename(result['video'])}: score {result['score']:.1f}"
                 + _interval_text(result), fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_timeline(rows: Sequence[Dict], prefix: str) -> List[str]:
    """`<prefix>.csv` and `<prefix>.json` of a scan; returns their paths."""
    if not rows:
        raise ValueError("empty timeline")
    with open(prefix + ".csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(prefix + ".json", "w") as f:
        json.dump(list(rows), f, indent=1)
    return [prefix + ".csv", prefix + ".json"]


def plot_timeline(rows: Sequence[Dict], path: str, title: str = "") -> str:
    """PNG: score of the window ending at each time, the best window marked, and below it the
    top-1 label of each sub-action over time (one coloured band per label)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = [k for k in rows[0] if k in tasks.CLASS_OUTPUTS]
    fig, axes = plt.subplots(1 + len(heads), 1, sharex=True, dpi=100,
                             figsize=(10, 3 + 0.45 * len(heads)),
                             gridspec_kw={"height_ratios": [6] + [1] * len(heads)})
    axes = np.atleast_1d(axes)
    times = np.array([r["end_time"] for r in rows])
    scores = np.array([r["score"] for r in rows])
    best = int(np.argmax(scores))
    axes[0].plot(times, scores, color="tab:blue", linewidth=1.5)
    axes[0].axvspan(rows[best]["start_time"], rows[best]["end_time"], color="tab:orange",
                    alpha=0.25, label=f"best window: {scores[best]:.1f} points")
    axes[0].plot([times[best]], [scores[best]], "o", color="tab:orange")
    axes[0].set_ylabel("score of the window\nending here")
    axes[0].legend(loc="upper left")
    axes[0].set_title(title)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    cmap = plt.get_cmap("tab10")
    for ax, head in zip(axes[1:], heads):
        labels = [r[head] for r in rows]
        names = sorted(set(labels), key=labels.index)
        for i, label in enumerate(labels):
            ax.axvspan(times[i] - step / 2, times[i] + step / 2, linewidth=0,
                       color=cmap(names.index(label) % 10))
        # Name each run of equal labels once, in its middle.
        start = 0
        for i in range(1, len(labels) + 1):
            if i == len(labels) or labels[i] != labels[start]:
                if times[i - 1] - times[start] >= 0.08 * (times[-1] - times[0] + step):
                    ax.text((times[start] + times[i - 1]) / 2, 0.5, labels[start], ha="center",
                            va="center", fontsize=7, transform=ax.get_xaxis_transform())
                start = i
        ax.set_yticks([])
        ax.set_ylabel(head, rotation=0, ha="right", va="center", fontsize=8)
    axes[-1].set_xlabel("time of the window's last frame (s)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def closest_exemplar(result: Dict) -> int:
    """Index of the exemplar whose own score is closest to the dive's predicted score."""
    return int(np.argmin([abs(e["score"] - result["score"]) for e in result["exemplars"]]))


def plot_exemplars(result: Dict, path: str) -> str:
    """PNG for models that compare with exemplars (CoRe): the dive's middle window frame beside
    the closest exemplar's (by score), and under them each exemplar's score and its verdict on
    the dive, with their mean (the predicted score)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aqa_tf.data.features import decode_jpeg
    exemplars = result["exemplars"]
    best = closest_exemplar(result)
    fig = plt.figure(figsize=(7.5, 6), dpi=100)
    grid = fig.add_gridspec(2, 2, height_ratios=[1.2, 1])
    query = fig.add_subplot(grid[0, 0])
    window = result["window"]
    query.imshow(window[len(window) // 2])
    query.set_title(f"this dive: {result['score']:.1f}", fontsize=9)
    other = fig.add_subplot(grid[0, 1])
    thumbnails = result.get("exemplar_thumbnails") or []
    if best < len(thumbnails) and thumbnails[best]:
        other.imshow(decode_jpeg(thumbnails[best]))
    other.set_title(f"closest exemplar {exemplars[best]['key']}: "
                    f"{exemplars[best]['score']:.1f}", fontsize=9, wrap=True)
    for ax in (query, other):
        ax.set_xticks([])
        ax.set_yticks([])
    bars = fig.add_subplot(grid[1, :])
    x = np.arange(len(exemplars))
    bars.bar(x - 0.2, [e["score"] for e in exemplars], 0.4, color="tab:gray",
             label="exemplar's score")
    bars.bar(x + 0.2, [e["verdict"] for e in exemplars], 0.4, color="tab:blue",
             label="its verdict on this dive")
    bars.axhline(result["score"], color="tab:red", label=f"mean {result['score']:.1f}")
    bars.set_xticks(x)
    bars.set_xticklabels([str(i + 1) for i in x])
    bars.set_xlabel("exemplar")
    bars.set_ylabel("score")
    bars.legend(fontsize=8, loc="lower right")
    group = result["exemplar_group"]
    fig.suptitle(f"{os.path.basename(result['video'])}: score {result['score']:.1f} against "
                 f"{len(exemplars)} exemplar{'s' * (len(exemplars) != 1)} "
                 + ("of any type" if group == "*"
                                                   else f"of {group}"), fontsize=10, wrap=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_steps(result: Dict, path: str) -> str:
    """PNG for procedure-aware models (TSA): the middle frame of each step the model found in
    the window (take-off, flight, entry), titled with its frames and times, above each step's
    share of the score difference to the exemplars (their sum: the predicted score minus the
    exemplars' mean score)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, window = result["steps"], result["window"]
    fig, axes = plt.subplots(2, len(steps), dpi=100, squeeze=False,
                             figsize=(max(6, 2.4 * len(steps)), 5.2),
                             gridspec_kw={"height_ratios": [1.3, 1]})
    for ax, step in zip(axes[0], steps):
        middle = (step["first_frame"] + step["last_frame"]) // 2
        ax.imshow(window[min(middle, len(window) - 1)])
        ax.set_title(f"{step['name']}\nframes {step['first_frame']}-{step['last_frame']} "
                     f"({step['start_time']:.2f}-{step['end_time']:.2f} s)", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[1][1:]:
        ax.remove()
    bars = fig.add_subplot(2, 1, 2) if len(steps) > 1 else axes[1][0]
    if len(steps) > 1:
        axes[1][0].remove()
    shares = [s["contribution"] for s in steps]
    bars.bar(range(len(steps)), shares, 0.5,
             color=["tab:green" if v >= 0 else "tab:red" for v in shares])
    bars.axhline(0, color="black", linewidth=0.8)
    bars.set_xticks(range(len(steps)))
    bars.set_xticklabels([s["name"] for s in steps])
    bars.set_ylabel("share of the score\ndifference (points)", fontsize=8)
    for i, v in enumerate(shares):
        bars.annotate(f"{v:+.2f}", (i, v), ha="center", va="bottom" if v >= 0 else "top",
                      fontsize=8)
    total = sum(shares)
    fig.suptitle(f"{os.path.basename(result['video'])}: score {result['score']:.1f}, "
                 f"{total:+.2f} against the exemplars' mean", fontsize=10, wrap=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_dive(result: Dict, meta: Dict, path: str) -> str:
    """PNG: the first, middle and last frame of each clip of the window (one column per clip)
    above each clip's contribution (Weight-Decider weights or per-clip scores) and a distribution
    head's prediction (`draw_distribution`), with the score and top sub-actions in the title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = np.asarray(meta["clip_frames"])
    kind = next((k for k in ("clip_weights", "clip_scores") if k in result), None)
    spread = "score_distribution" in result
    extra = [1.6] * (bool(kind) + spread)
    rows = 3 + len(extra)
    fig, axes = plt.subplots(rows, len(clips), dpi=100, squeeze=False,
                             figsize=(max(6, 1.6 * len(clips)), 1.3 * rows + 1.2),
                             gridspec_kw={"height_ratios": [1, 1, 1] + extra})
    for c, frames in enumerate(clips):
        for r, pick in enumerate((frames[0], frames[len(frames) // 2], frames[-1])):
            ax = axes[r][c]
            ax.imshow(result["window"][pick])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"clip {c + 1}", fontsize=9)
            if c == 0:
                ax.set_ylabel(("first", "middle", "last")[r], fontsize=8)
    if kind:
        gs = axes[3][0].get_gridspec()
        for ax in axes[3]:
            ax.remove()
        bar = fig.add_subplot(gs[3, :])
        values = result[kind]
        bar.bar(np.arange(1, len(values) + 1), values, color="tab:blue")
        bar.set_xticks(np.arange(1, len(values) + 1))
        bar.set_xlim(0.5, len(values) + 0.5)
        bar.set_ylabel("Weight-Decider\nweight" if kind == "clip_weights" else "clip score")
        bar.set_xlabel("clip")
    if spread:
        gs = axes[-1][0].get_gridspec()
        for ax in axes[-1]:
            ax.remove()
        draw_distribution(fig.add_subplot(gs[rows - 1, :]), result, meta)
    top = ", ".join(ranked[0][0] for ranked in result["sub_actions"].values())
    fig.suptitle(f"{os.path.basename(result['video'])}: score {result['score']:.1f}"
                 + _interval_text(result) + (f" ({top})" if top else ""), fontsize=10, wrap=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

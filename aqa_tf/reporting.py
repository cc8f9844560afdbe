"""Human-facing outputs of a run: the final table, a predictions file, a scatter plot."""

import csv
from typing import Dict, Sequence

import numpy as np
from numpy.typing import ArrayLike


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
    for name, rate in result.get("majority_rates", {}).items():
        acc = m.get(f"accuracy/{name}", float("nan"))
        lines.append(f"  {'accuracy ' + name:<28}{acc:>10.4f}   (majority class {rate:.4f})")
    from aqa_tf.caption_metrics import METRIC_NAMES
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
    class_names = [n for n in outputs if n != "score" and n in targets]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sample_key", "true_score", "pred_score"] +
                        [f"{p}_{n}" for n in class_names for p in ("true", "pred")])
        for i, key in enumerate(keys):
            row = [key, f"{targets['score'][i]:.3f}", f"{outputs['score'][i]:.3f}"]
            for n in class_names:
                row += [int(targets[n][i]), int(np.argmax(outputs[n][i]))]
            writer.writerow(row)


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

"""Temporal robustness (VoV3D paper, Figure 5): one checkpoint tested at several sampling rates.

Each model is tested with dense clips of NUM_FRAMES frames taken SAMPLING_RATE frames apart (at
DATA.TARGET_FPS; frame folders: SAMPLING_RATE frames apart), for every rate of the sweep, with the
usual multi-view test. The drop is measured against the model's accuracy at its own rate (the
config's DATA.SAMPLING_RATE) or, when that rate is not in the sweep, against its best.
"""

import json
import logging
import os

logger = logging.getLogger(__name__)


def sweep_sampling_rates(cfg, rates, output_dir):
    """Returns {rate: top-1 accuracy} of cfg's TEST.CHECKPOINT_FILE_PATH tested at every rate."""
    from vov3d.engine.evaluate import test

    results = {}
    for rate in rates:
        c = cfg.clone()
        c.DATA.SAMPLING_RATE = int(rate)
        c.DATA.TEMPORAL_SAMPLING = "dense"
        c.OUTPUT_DIR = os.path.join(output_dir, f"rate_{rate}")
        c.TRAIN.ENABLE = False
        report = test(c)
        results[int(rate)] = float(report["top1_acc"])
        logger.info("sampling rate %d: top-1 %.2f%%", rate, results[int(rate)])
    return results


def accuracy_drops(results, reference_rate):
    """Returns {rate: accuracy - accuracy at reference_rate (or at the best rate when it is absent)}."""
    ref = results.get(reference_rate, max(results.values()))
    return {r: acc - ref for r, acc in results.items()}


def plot_robustness(curves, path, title="Temporal robustness"):
    """Writes a PNG of accuracy drop against sampling rate, one line per model; returns path.

    `curves`: {label: {rate: drop}}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, drops in curves.items():
        rates = sorted(drops)
        ax.plot(rates, [drops[r] for r in rates], marker="o", label=label)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_xlabel("test sampling rate (frames apart)")
    ax.set_ylabel("top-1 change (points)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(models, rates, output_dir):
    """Tests every (label, cfg) of `models` at every rate; writes robustness.json and robustness.png
    in output_dir; returns {label: {"accuracy": {rate: acc}, "drop": {rate: drop}, "reference_rate": r}}."""
    os.makedirs(output_dir, exist_ok=True)
    summary, curves = {}, {}
    for label, cfg in models:
        acc = sweep_sampling_rates(cfg, rates, os.path.join(output_dir, label))
        ref = int(cfg.DATA.SAMPLING_RATE)
        drops = accuracy_drops(acc, ref)
        summary[label] = {"accuracy": acc, "drop": drops, "reference_rate": ref}
        curves[label] = drops
    with open(os.path.join(output_dir, "robustness.json"), "w") as f:
        json.dump(summary, f, indent=2)
    plot_robustness(curves, os.path.join(output_dir, "robustness.png"))
    return summary

"""PNG figures with matplotlib's Agg backend: training curves and the confusion matrix."""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _dedupe(stats, kind):
    """Returns the stats of `kind`, keeping the last entry per (epoch, iter) (a resumed run repeats some)."""
    keyed = {}
    for s in stats:
        if s.get("_type") == kind:
            keyed[(s.get("epoch_float", s.get("epoch")), s.get("iter"))] = s
    return [keyed[k] for k in sorted(keyed, key=lambda k: (float(k[0] or 0), k[1] or 0))]


def plot_training_curves(stats, path):
    """Writes loss / learning rate / error curves of a run's json stats to `path`; returns `path` or None."""
    train = _dedupe(stats, "train_iter")
    val = _dedupe(stats, "val_epoch")
    if not train and not val:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if train:
        x = [s["epoch_float"] for s in train]
        axes[0].plot(x, [s["loss"] for s in train], label="train loss")
        axes[1].plot(x, [s["lr"] for s in train], label="lr")
        axes[2].plot(x, [s["top1_err"] for s in train], label="train top-1 err")
        axes[2].plot(x, [s["top5_err"] for s in train], label="train top-5 err", alpha=0.6)
    if val:
        x = [s["epoch_float"] for s in val]
        axes[2].plot(x, [s["top1_err"] for s in val], "o-", label="val top-1 err")
        axes[2].plot(x, [s["top5_err"] for s in val], "s--", label="val top-5 err")
    for ax, title in zip(axes, ("loss", "learning rate", "error (%)")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_matrix_figure(cmat, class_names=None, figsize=(8, 8), normalize=True):
    """Returns a matplotlib figure of a (K, K) confusion matrix (rows: true class), row-normalised."""
    m = cmat.double()
    if normalize:
        m = m / m.sum(dim=1, keepdim=True).clamp(min=1)
    k = m.shape[0]
    fig, ax = plt.subplots(figsize=tuple(figsize))
    im = ax.imshow(m.numpy(), interpolation="nearest", cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    if class_names is not None and k <= 40:
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xticklabels(class_names, rotation=90, fontsize=6)
        ax.set_yticklabels(class_names, fontsize=6)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cmat, path, class_names=None, figsize=(8, 8)):
    """Writes the confusion matrix PNG to `path`; returns `path`."""
    fig = confusion_matrix_figure(cmat, class_names, figsize)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

"""Classification metrics: top-k correct / error, mean-class accuracy, confusion matrix."""

import torch


def topks_correct(preds, labels, ks):
    """Returns, for each k in `ks`, the number of rows of `preds` (N, K) whose top-k holds the label."""
    if preds.size(0) != labels.size(0):
        raise ValueError(f"batch sizes differ: preds {preds.size(0)}, labels {labels.size(0)}")
    maxk = min(max(ks), preds.size(1))
    _, top = torch.topk(preds, maxk, dim=1, largest=True, sorted=True)
    hits = top.t() == labels.view(1, -1).expand_as(top.t())
    return [hits[: min(k, maxk)].reshape(-1).float().sum() for k in ks]


def topk_correct_mask(preds, labels, k):
    """Returns a bool tensor (N,): True where the label is in the row's top-k."""
    k = min(k, preds.size(1))
    _, top = torch.topk(preds, k, dim=1)
    return (top == labels.view(-1, 1)).any(dim=1)


def topk_errors(preds, labels, ks):
    """Returns the top-k error percentages (0-100) for each k in `ks`."""
    n = max(preds.size(0), 1)
    return [(1.0 - c / n) * 100.0 for c in topks_correct(preds, labels, ks)]


def topk_accuracies(preds, labels, ks):
    """Returns the top-k accuracy percentages (0-100) for each k in `ks`."""
    n = max(preds.size(0), 1)
    return [(c / n) * 100.0 for c in topks_correct(preds, labels, ks)]


def confusion_matrix(pred_labels, labels, num_classes):
    """Returns the (num_classes, num_classes) int64 matrix: rows true class, columns predicted class."""
    idx = labels.long() * num_classes + pred_labels.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(cmat):
    """Returns (accuracy per class in %, count per class); classes without samples get NaN."""
    counts = cmat.sum(dim=1)
    correct = cmat.diag()
    acc = torch.where(counts > 0, correct.double() / counts.clamp(min=1).double() * 100.0, torch.nan)
    return acc, counts


def mean_class_accuracy(pred_labels, labels, num_classes):
    """Returns the mean over classes present in `labels` of their top-1 accuracy, in %."""
    acc, counts = per_class_accuracy(confusion_matrix(pred_labels, labels, num_classes))
    present = counts > 0
    if not present.any():
        return float("nan")
    return float(acc[present].mean())

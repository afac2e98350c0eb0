"""What every video model offers besides its default output: features, logits, the CAM layer.

Every family subclasses :class:`VideoClassifier` and implements only ``forward_features``; the rest
is shared:

    feats = model.forward_features(clip)                    # (N, C, T', H', W'): last map before pooling
    logits = model.forward_head(feats)                      # (N, K) logits, in train and in eval mode
    vector = model.forward_head(feats, pre_logits=True)     # (N, D) what the classifier reads
    probs = model([clip])                                   # default: eval = softmax averaged over positions

The default ``forward`` keeps the PySlowFast convention (train: logits, eval: probabilities), so
official checkpoints give the official numbers; ``forward_head`` is the one way to get logits in eval.
Positions: a test crop larger than the training crop leaves several positions after the head's pool;
``forward_head`` averages the logits (or the pre-logit vectors) over them, the default ``forward``
averages the probabilities, as the official code does.
"""

import torch
import torch.nn as nn


def clip_of(x):
    """Returns the clip tensor of a model input: `x` itself, or the one pathway of a list/tuple."""
    if isinstance(x, (list, tuple)):
        if len(x) != 1:
            raise ValueError(f"vov3d models take one pathway; got a list of {len(x)} tensors")
        x = x[0]
    if not torch.is_tensor(x) or x.dim() != 5:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"a model input is one N,C,T,H,W clip (or a list of one); got {shape}")
    return x


# The runtime's fast eval path (vov3d/runtime/eval_path.py registers it when vov3d is imported; models
# never import the runtime): accelerate(model, inputs) returns the output of a prepared inference copy,
# or None when the plain forward must run; release(model) frees that copy.
_eval_accelerator = None
_eval_release = None


def set_eval_accelerator(accelerate, release):
    """Registers the functions that run no-grad eval forwards on a prepared copy (see eval_path.py)."""
    global _eval_accelerator, _eval_release
    _eval_accelerator, _eval_release = accelerate, release


class VideoClassifier(nn.Module):
    """Base of the registered families: ``forward = head(forward_features)``.

    Subclasses set ``self.head`` (a head with ``forward_head(x, pre_logits)``), implement
    ``forward_features`` and name their classifier (``CLASSIFIER``, for checkpoint surgery) and the
    module whose output is the last feature map (``FEATURE_LAYER``, Grad-CAM's default layer).
    """

    CLASSIFIER = "head"
    FEATURE_LAYER = None
    # No-grad forwards in eval mode run the runtime's prepared copy (vov3d/runtime/eval_path.py):
    # stock outputs within 1e-5, at the engine's inference speed. False: always the plain forward.
    accelerated_eval = True

    def forward_features(self, x):
        """Returns the last feature map before the head's pooling, (N, C, T', H', W')."""
        raise NotImplementedError

    def forward_head(self, features, pre_logits=False):
        """Returns the logits (N, K) of a feature map, averaged over the positions left after
        pooling, in any mode; with `pre_logits`, the (N, D) vector the classifier reads instead."""
        return self.head.forward_head(features, pre_logits=pre_logits)

    def forward(self, xs):
        if not self.training and _eval_accelerator is not None and not torch.is_grad_enabled():
            out = _eval_accelerator(self, xs)
            if out is not None:
                return out
        return self.head(self.forward_features(xs))

    def train(self, mode=True):
        if mode and _eval_release is not None:
            _eval_release(self)  # the prepared copy is an eval-time thing: free it while training
        return super().train(mode)

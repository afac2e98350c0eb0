"""BatchNorm folding for inference copies: every BN that directly follows a conv joins that conv.

The conv -> BN pairs are found from what a forward does (`find_conv_bn_pairs`), not from module
names, so it covers every model of the zoo. Eval outputs stay within 1e-5 (tests/test_speed.py).
"""

import collections
import copy
import logging

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Tensor calls that read metadata only: they are not a second consumer of a conv output.
_METADATA_CALLS = {
    "__get__", "dim", "size", "stride", "numel", "is_contiguous", "data_ptr", "element_size", "__len__",
    "is_floating_point", "get_device", "ndimension", "nelement", "is_complex",
}


class _UseCounter(torch.overrides.TorchFunctionMode):
    """Counts, per tensor id, the torch calls taking that tensor outside any BatchNorm forward."""

    def __init__(self):
        super().__init__()
        self.uses = collections.Counter()
        self.in_bn = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.in_bn and getattr(func, "__name__", "") not in _METADATA_CALLS:
            for a in list(args) + list(kwargs.values()):
                if isinstance(a, torch.Tensor):
                    self.uses[id(a)] += 1
                elif isinstance(a, (list, tuple)):
                    for b in a:
                        if isinstance(b, torch.Tensor):
                            self.uses[id(b)] += 1
        return func(*args, **kwargs)


def find_conv_bn_pairs(model, example_inputs):
    """Returns [(conv_name, bn_name)] of every BatchNorm whose input is the output of one conv, used
    by nothing but that BatchNorm, found by running `example_inputs` through `model` (eval, no grad).

    Found from what the forward does, not from names, so it covers every model of the zoo.
    """
    names = {m: n for n, m in model.named_modules()}
    produced = {}  # id(output) -> (output, conv name); outputs are kept alive so ids stay unique
    candidates = []
    counter = _UseCounter()
    handles = []

    def conv_hook(m, inp, out):
        if isinstance(out, torch.Tensor):
            produced[id(out)] = (out, names[m])
            counter.uses[id(out)] = 0

    def bn_pre(m, inp):
        x = inp[0]
        if id(x) in produced and produced[id(x)][0] is x:
            candidates.append((produced[id(x)][1], names[m], id(x), counter.uses[id(x)]))
        counter.in_bn += 1

    def bn_post(m, inp, out):
        counter.in_bn -= 1

    for m in model.modules():
        if isinstance(m, _CONVS):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            handles.append(m.register_forward_pre_hook(bn_pre))
            handles.append(m.register_forward_hook(bn_post))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(example_inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    pairs, seen_bn, bn_count = [], set(), collections.Counter(bn for _, bn, _, _ in candidates)
    for conv, bn, tid, uses_before in candidates:
        # Foldable: the BN runs once, and nobody used the conv output before or after it.
        if bn_count[bn] == 1 and uses_before == 0 and counter.uses[tid] == 0 and bn not in seen_bn:
            pairs.append((conv, bn))
            seen_bn.add(bn)
    conv_count = collections.Counter(c for c, _ in pairs)
    return [(c, b) for c, b in pairs if conv_count[c] == 1]


def set_submodule(model, name, module):
    """Replaces the submodule called `name` (dotted) of `model` by `module`."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


@torch.no_grad()
def fold_conv_bn_(conv, bn):
    """Folds eval-mode `bn` into `conv` in place (the conv gets a bias); keeps the weight's layout."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else torch.rsqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    w = conv.weight
    new_w = (w.double() * scale.double().view(-1, *([1] * (w.dim() - 1)))).to(w.dtype)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(bn.running_mean, dtype=torch.float64)
    new_b = ((bias - bn.running_mean.double()) * scale.double() + shift.double()).to(w.dtype)
    conv.weight = nn.Parameter(new_w.contiguous(memory_format=_weight_format(w)), requires_grad=False)
    conv.bias = nn.Parameter(new_b, requires_grad=False)


def _weight_format(w):
    if w.dim() == 5 and w.is_contiguous(memory_format=torch.channels_last_3d) and not w.is_contiguous():
        return torch.channels_last_3d
    if w.dim() == 4 and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def fold_batchnorm(model, example_inputs):
    """Returns an inference-only copy of `model` (eval mode, no grad) in which every BatchNorm that
    directly follows a conv is folded into that conv and replaced by nn.Identity.

    `example_inputs` is what the model's forward takes (vov3d models: a list of one clip); it is run
    once to find the conv -> BN pairs (find_conv_bn_pairs). Eval outputs stay within 1e-5. The
    original model is untouched: train and save checkpoints with it, never with the copy.
    """
    folded = copy.deepcopy(model).eval()
    pairs = find_conv_bn_pairs(folded, example_inputs)
    for conv_name, bn_name in pairs:
        bn = folded.get_submodule(bn_name)
        if not bn.track_running_stats or bn.running_mean is None:
            continue
        fold_conv_bn_(folded.get_submodule(conv_name), bn)
        set_submodule(folded, bn_name, nn.Identity().eval())
    for p in folded.parameters():
        p.requires_grad_(False)
    logger.debug("Folded %d BatchNorms into their convs", len(pairs))
    return folded

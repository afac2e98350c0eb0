"""Residual blocks and stages in PySlowFast's layout (`s{k}.pathway0_res{i}.branch1/branch2`), and
activation checkpointing of the blocks of a stage (MODEL.ACT_CHECKPOINT)."""

import contextlib

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


@contextlib.contextmanager
def _frozen_bn_stats(module):
    """Runs the body with the running statistics of `module`'s BatchNorms left untouched (momentum 0, the
    batch counter restored): the same ops run, so checkpointing sees the same saved tensors."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = running * 1 + batch * 0: unchanged
    try:
        yield
    finally:
        for m, (momentum, count) in zip(bns, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def run_block(block, x, act_checkpoint):
    """Returns block(x); with `act_checkpoint` (training with autograd on) the block's activations are
    not kept but recomputed in the backward pass.

    The recomputation runs the block's BatchNorms in train mode again; PySlowFast's checkpointing lets
    them update their running statistics a second time (momentum applied twice per step). Here the
    recomputation leaves them alone, so the running statistics are those of a run without checkpointing."""
    if not (act_checkpoint and block.training and torch.is_grad_enabled()):
        return block(x)
    return checkpoint(block, x, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), _frozen_bn_stats(block)))


class BlockSequence(nn.Sequential):
    """nn.Sequential of residual blocks (same state-dict names) whose blocks can be checkpointed."""

    act_checkpoint = False  # set by set_activation_checkpointing

    def forward(self, x):
        for block in self:
            x = run_block(block, x, self.act_checkpoint)
        return x


def set_activation_checkpointing(model, enabled=True):
    """Turns block-wise activation checkpointing of every stage of `model` on or off; returns the number of
    stages it applies to (0: the model has no ResStage / BlockSequence, e.g. S3D)."""
    stages = [m for m in model.modules() if isinstance(m, (ResStage, BlockSequence))]
    for m in stages:
        m.act_checkpoint = bool(enabled)
    return len(stages)


class ResBlock(nn.Module):
    """ReLU(shortcut(x) + branch2(x)).

    The shortcut is the identity unless the stride is not 1 or the width changes; then it is a
    1x1x1 conv with the block's spatial stride (`branch1`) followed by BN (`branch1_bn`). With
    `strided_shortcut_bn` False a shortcut that strides but keeps the width has no BN (PyTorchVideo's
    X3D, whose res2 block 0 is such a block).
    """

    def __init__(self, dim_in, dim_out, stride, branch2, strided_shortcut_bn=True):
        super().__init__()
        if dim_in != dim_out or stride != 1:
            self.branch1 = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            if dim_in != dim_out or strided_shortcut_bn:
                self.branch1_bn = nn.BatchNorm3d(dim_out)
        self.branch2 = branch2
        self.relu = nn.ReLU(inplace=True)

    def residual_parts(self):
        """Returns this block by role, for runtimes that add the shortcut and apply the ReLU in the
        kernel computing `branch2`'s last conv: the `shortcut` modules in order ([] for the identity),
        `branch2`, and the activation `out_act`."""
        shortcut = [getattr(self, n) for n in ("branch1", "branch1_bn") if hasattr(self, n)]
        return {"shortcut": shortcut, "branch2": self.branch2, "out_act": self.relu}

    def forward(self, x):
        shortcut = x
        if hasattr(self, "branch1"):
            shortcut = self.branch1(x)
            if hasattr(self, "branch1_bn"):
                shortcut = self.branch1_bn(shortcut)
        return self.relu(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """A stage of `num_blocks` ResBlocks; block 0 carries the stride and the width change.

    `make_branch2(block_index, dim_in, stride)` returns the transform of each block, so the same
    stage serves X3D bottlenecks, T-OSA blocks and any other transform. `strided_shortcut_bn`: see
    ResBlock.
    """

    def __init__(self, dim_in, dim_out, num_blocks, stride, make_branch2, strided_shortcut_bn=True):
        super().__init__()
        for i in range(num_blocks):
            block_in, block_stride = (dim_in, stride) if i == 0 else (dim_out, 1)
            block = ResBlock(block_in, dim_out, block_stride, make_branch2(i, block_in, block_stride),
                             strided_shortcut_bn)
            self.add_module(f"pathway0_res{i}", block)

    act_checkpoint = False  # set by set_activation_checkpointing

    def forward(self, xs):
        x = xs[0]
        for block in self.children():
            x = run_block(block, x, self.act_checkpoint)
        return [x]

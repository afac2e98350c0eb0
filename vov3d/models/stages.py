"""Residual blocks and stages in PySlowFast's layout (`s{k}.pathway0_res{i}.branch1/branch2`)."""

import torch.nn as nn


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

    def forward(self, xs):
        x = xs[0]
        for block in self.children():
            x = block(x)
        return [x]

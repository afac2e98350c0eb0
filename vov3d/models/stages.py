"""Residual blocks and stages in PySlowFast's layout (`s{k}.pathway0_res{i}.branch1/branch2`)."""

import torch.nn as nn


class ResBlock(nn.Module):
    """ReLU(shortcut(x) + branch2(x)).

    The shortcut is the identity unless the stride is not 1 or the width changes; then it is a
    1x1x1 conv with the block's spatial stride (`branch1`) followed by BN (`branch1_bn`).
    """

    def __init__(self, dim_in, dim_out, stride, branch2):
        super().__init__()
        if dim_in != dim_out or stride != 1:
            self.branch1 = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            self.branch1_bn = nn.BatchNorm3d(dim_out)
        self.branch2 = branch2
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        shortcut = self.branch1_bn(self.branch1(x)) if hasattr(self, "branch1") else x
        return self.relu(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """A stage of `num_blocks` ResBlocks; block 0 carries the stride and the width change.

    `make_branch2(block_index, dim_in, stride)` returns the transform of each block, so the same
    stage serves X3D bottlenecks, T-OSA blocks and any other transform.
    """

    def __init__(self, dim_in, dim_out, num_blocks, stride, make_branch2):
        super().__init__()
        for i in range(num_blocks):
            block_in, block_stride = (dim_in, stride) if i == 0 else (dim_out, 1)
            block = ResBlock(block_in, dim_out, block_stride, make_branch2(i, block_in, block_stride))
            self.add_module(f"pathway0_res{i}", block)

    def forward(self, xs):
        x = xs[0]
        for block in self.children():
            x = block(x)
        return [x]

"""Classification heads."""

import torch.nn as nn


class X3DHead(nn.Module):
    """X3D head (also VoV3D's): conv_5 -> BN -> ReLU -> avg pool -> lin_5 -> [BN] -> ReLU -> dropout -> fc.

    As in PySlowFast, the pool kernel is fixed by the training clip (NUM_FRAMES x ceil(crop/32)^2),
    not adaptive, so a larger test crop leaves several positions in the final map. Train mode
    returns the logits flattened to (N, -1). Eval mode applies the softmax (or sigmoid) at every
    remaining position and returns the mean over positions: probabilities, not logits. That is what
    official outputs are, and what fully-convolutional 3-crop testing at 256 averages. `pool_size`
    None pools globally (multigrid training, whose clips change shape; PySlowFast does the same for
    its ResNets under MULTIGRID.SHORT_CYCLE).
    """

    def __init__(self, dim_in, dim_inner, dim_out, num_classes, pool_size, dropout_rate=0.0,
                 act_func="softmax", bn_lin5=False):
        super().__init__()
        self.conv_5 = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.conv_5_bn = nn.BatchNorm3d(dim_inner)
        self.conv_5_relu = nn.ReLU(inplace=True)
        self.avg_pool = nn.AdaptiveAvgPool3d(1) if pool_size is None else nn.AvgPool3d(pool_size, stride=1)
        self.lin_5 = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        if bn_lin5:
            self.lin_5_bn = nn.BatchNorm3d(dim_out)
        self.lin_5_relu = nn.ReLU(inplace=True)
        if dropout_rate > 0.0:
            self.dropout = nn.Dropout(dropout_rate)
        self.projection = nn.Linear(dim_out, num_classes, bias=True)
        if act_func == "softmax":
            self.act = nn.Softmax(dim=4)
        elif act_func == "sigmoid":
            self.act = nn.Sigmoid()
        else:
            raise NotImplementedError(f"MODEL.HEAD_ACT {act_func!r} is not supported (softmax | sigmoid)")

    def pooling_parts(self):
        """Returns the ops before the pooled map by role, for runtimes that compute the pooled map in
        one kernel: the 1x1x1 conv `conv`, its BN `bn`, the activation `act` and the pool `pool`."""
        return {"conv": self.conv_5, "bn": self.conv_5_bn, "act": self.conv_5_relu, "pool": self.avg_pool}

    def forward_pre_logits(self, x, pooled=False):
        """Returns the vector the classifier reads at every position of the pooled map: (N, T', H', W', D).
        `pooled`: x is that map already (what conv_5, its BN, ReLU and the pool give)."""
        if not pooled:
            x = self.avg_pool(self.conv_5_relu(self.conv_5_bn(self.conv_5(x))))
        x = self.lin_5(x)
        if hasattr(self, "lin_5_bn"):
            x = self.lin_5_bn(x)
        x = self.lin_5_relu(x).permute(0, 2, 3, 4, 1)
        if hasattr(self, "dropout"):
            x = self.dropout(x)
        return x

    def forward_logits(self, x, pooled=False):
        """Returns the classifier output at every position of the pooled map: (N, T', H', W', K)."""
        return self.projection(self.forward_pre_logits(x, pooled))

    def forward_head(self, x, pre_logits=False):
        """Returns the logits (N, K) averaged over positions; with `pre_logits`, the (N, D) vectors."""
        x = self.forward_pre_logits(x)
        return x.mean((1, 2, 3)) if pre_logits else self.projection(x).mean((1, 2, 3))

    def forward(self, x, pooled=False):
        x = self.forward_logits(x, pooled)
        if not self.training:
            x = self.act(x).mean((1, 2, 3))
        return x.reshape(x.shape[0], -1)


def pool_size_for(cfg):
    """Returns the X3D head pool kernel for cfg: (NUM_FRAMES, ceil(crop/32), ceil(crop/32)), or None (global
    pooling) with MULTIGRID.LONG_CYCLE / SHORT_CYCLE, whose clips are smaller than the default."""
    if cfg.MULTIGRID.LONG_CYCLE or cfg.MULTIGRID.SHORT_CYCLE:
        return None
    spatial = -(-cfg.DATA.TRAIN_CROP_SIZE // 32)
    return (cfg.DATA.NUM_FRAMES, spatial, spatial)



class PoolFCHead(nn.Module):
    """Average pool -> [dropout] -> fc: the head of the ResNet-style and Inception-style zoo models.

    `pool_size` None pools globally (torchvision / VMZ video ResNets, P3D, SmallBigNet). A kernel
    (t, h, w) pools with stride 1 and is clipped to the feature map, as TF-slim's
    `reduced_kernel_size_3d` does for S3D's 2x7x7; larger inputs then leave several positions.
    The fc runs at every remaining position (the same as a 1x1x1 conv classifier). Train mode
    returns the logits averaged over positions, (N, K), as torchvision's S3D does; eval mode
    applies the softmax (or sigmoid) at each position and returns the mean: probabilities.
    """

    def __init__(self, dim_in, num_classes, pool_size=None, dropout_rate=0.0, act_func="softmax"):
        super().__init__()
        if act_func not in ("softmax", "sigmoid"):
            raise NotImplementedError(f"MODEL.HEAD_ACT {act_func!r} is not supported (softmax | sigmoid)")
        self.pool_size = tuple(pool_size) if pool_size else None
        self.act_func = act_func
        if dropout_rate > 0.0:
            self.dropout = nn.Dropout(dropout_rate)
        self.fc = nn.Linear(dim_in, num_classes, bias=True)

    def forward_pre_logits(self, x):
        """Returns the vector the fc reads at every position of the pooled map: (N, T', H', W', D)."""
        if self.pool_size is None:
            x = x.mean((2, 3, 4), keepdim=True)
        else:
            kernel = [min(k, s) for k, s in zip(self.pool_size, x.shape[2:])]
            x = nn.functional.avg_pool3d(x, kernel, stride=1)
        x = x.permute(0, 2, 3, 4, 1)
        if hasattr(self, "dropout"):
            x = self.dropout(x)
        return x

    def forward_head(self, x, pre_logits=False):
        """Returns the logits (N, K) averaged over positions; with `pre_logits`, the (N, D) vectors."""
        x = self.forward_pre_logits(x)
        return x.mean((1, 2, 3)) if pre_logits else self.fc(x).mean((1, 2, 3))

    def forward(self, x):
        x = self.fc(self.forward_pre_logits(x))
        if not self.training:
            x = x.softmax(dim=-1) if self.act_func == "softmax" else x.sigmoid()
        return x.mean((1, 2, 3))

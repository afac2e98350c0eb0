"""Classification heads."""

import torch.nn as nn


class X3DHead(nn.Module):
    """X3D head (also VoV3D's): conv_5 -> BN -> ReLU -> avg pool -> lin_5 -> [BN] -> ReLU -> dropout -> fc.

    As in PySlowFast, the pool kernel is fixed by the training clip (NUM_FRAMES x ceil(crop/32)^2),
    not adaptive, so a larger test crop leaves several positions in the final map. Train mode
    returns the logits flattened to (N, -1). Eval mode applies the softmax (or sigmoid) at every
    remaining position and returns the mean over positions: probabilities, not logits. That is what
    official outputs are, and what fully-convolutional 3-crop testing at 256 averages.
    """

    def __init__(self, dim_in, dim_inner, dim_out, num_classes, pool_size, dropout_rate=0.0,
                 act_func="softmax", bn_lin5=False):
        super().__init__()
        self.conv_5 = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.conv_5_bn = nn.BatchNorm3d(dim_inner)
        self.conv_5_relu = nn.ReLU(inplace=True)
        self.avg_pool = nn.AvgPool3d(pool_size, stride=1)
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

    def forward_logits(self, x):
        """Returns the classifier output at every position of the pooled map: (N, T', H', W', K)."""
        x = self.conv_5_relu(self.conv_5_bn(self.conv_5(x)))
        x = self.lin_5(self.avg_pool(x))
        if hasattr(self, "lin_5_bn"):
            x = self.lin_5_bn(x)
        x = self.lin_5_relu(x).permute(0, 2, 3, 4, 1)
        if hasattr(self, "dropout"):
            x = self.dropout(x)
        return self.projection(x)

    def forward(self, xs):
        x = self.forward_logits(xs[0])
        if not self.training:
            x = self.act(x).mean((1, 2, 3))
        return x.reshape(x.shape[0], -1)


def pool_size_for(cfg):
    """Returns the X3D head pool kernel for cfg: (NUM_FRAMES, ceil(crop/32), ceil(crop/32))."""
    spatial = -(-cfg.DATA.TRAIN_CROP_SIZE // 32)
    return (cfg.DATA.NUM_FRAMES, spatial, spatial)


"""Exponential moving average of a model's weights, used for evaluation when TRAIN.EMA.ENABLE."""

import copy

import torch

from vov3d.utils.checkpoint import unwrap_model


class ModelEMA:
    """Holds `module`, a frozen copy of the model whose floating-point state follows
    ema = decay * ema + (1 - decay) * weights after every optimizer step (integer buffers are copied)."""

    def __init__(self, model, decay):
        self.module = copy.deepcopy(unwrap_model(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    @torch.no_grad()
    def update(self, model):
        """Moves the average one step towards `model`'s current weights."""
        self.updates += 1
        src = unwrap_model(model).state_dict()
        for k, v in self.module.state_dict().items():
            s = src[k]
            if v.dtype.is_floating_point:
                v.mul_(self.decay).add_(s.detach().to(v.dtype), alpha=1.0 - self.decay)
            else:
                v.copy_(s)

    def state_dict(self):
        """Returns {"model_state", "updates", "decay"} for a checkpoint's ema_state."""
        return {"model_state": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state):
        """Restores what state_dict returned."""
        self.module.load_state_dict(state["model_state"])
        self.updates = int(state.get("updates", 0))

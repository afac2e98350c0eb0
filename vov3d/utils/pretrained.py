"""A model built by the name of its published weights (vov3d.utils.weights.KNOWN_WEIGHTS), with or
without them: what hubconf.py's torch.hub entry points call."""

from vov3d.config import load_config
from vov3d.models import build_model
from vov3d.utils.checkpoint import load_checkpoint
from vov3d.utils.weights import lookup

# Short torch.hub names -> weights names (Kinetics-400 from the official VoV3D release).
ALIASES = {"vov3d_m": "vov3d_m_k400", "vov3d_l": "vov3d_l_k400", "x3d_m": "x3d_m_k400", "x3d_l": "x3d_l_k400"}


def pretrained_config(name, opts=()):
    """Returns the validated config of the weights `name` (or alias) on the CPU, plus `opts` (KEY VALUE list)."""
    w = lookup(ALIASES.get(name, name))
    return load_config(w.config, [*w.opts, "NUM_GPUS", 0, *opts])


def pretrained_model(name, pretrained=True, num_classes=None, opts=()):
    """Returns the model of the weights `name` (or alias), loaded with them when `pretrained` (downloaded
    once and verified); `num_classes` other than the weights' re-initialises the classifier (fine-tuning)."""
    name = ALIASES.get(name, name)
    cfg = pretrained_config(name, [*opts, *(["MODEL.NUM_CLASSES", num_classes] if num_classes else [])])
    model = build_model(cfg)
    if pretrained:
        load_checkpoint(name, model)
    return model

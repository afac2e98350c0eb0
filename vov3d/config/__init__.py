"""Config tree and loading helpers."""
from vov3d.config.defaults import get_cfg  # noqa: F401

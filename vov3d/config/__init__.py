"""The config tree (defaults.py), PySlowFast compatibility (compat.py) and the loader (load.py)."""
from vov3d.config.defaults import get_cfg  # noqa: F401
from vov3d.config.load import ConfigError, load_config, validate  # noqa: F401
from vov3d.config.paths import config_root, find_config  # noqa: F401

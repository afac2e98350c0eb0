"""Where the shipped configs are: the checkout's top-level ``configs/`` (the source of truth), which
``pip install .`` copies into the package as ``vov3d/configs`` (pyproject.toml, package-dir).

So ``--cfg configs/SSv1/VoV3D_L_32x1.yaml`` (the README's commands) works from a checkout, from any
folder after a non-editable install, and as ``--cfg SSv1/VoV3D_L_32x1`` everywhere.
"""

import os

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../vov3d


def config_root():
    """Returns the folder of the shipped configs: vov3d/configs when installed, else the checkout's configs/."""
    installed = os.path.join(_PACKAGE, "configs")
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(_PACKAGE), "configs")


def find_config(path):
    """Returns `path` when it exists, else the shipped config it names (``configs/`` prefix and the
    ``.yaml`` suffix optional), else `path` unchanged (the loader then reports it missing)."""
    if not path or os.path.exists(path):
        return path
    rel = path.replace("\\", "/")
    if rel.startswith("configs/"):
        rel = rel[len("configs/"):]
    for candidate in (rel, rel + ".yaml"):
        shipped = os.path.join(config_root(), candidate)
        if not os.path.isabs(candidate) and os.path.isfile(shipped):
            return shipped
    return path


def shipped_configs():
    """Returns the shipped configs as paths relative to config_root() (``SSv1/VoV3D_L_32x1.yaml``), sorted."""
    root = config_root()
    found = []
    for folder, _, files in os.walk(root):
        found += [os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/")
                  for f in files if f.endswith(".yaml") and not f.startswith("_")]
    return sorted(found)

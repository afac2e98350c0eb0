"""vov3d: efficient video classification (VoV3D, X3D and the field's other architectures) in PyTorch."""

__version__ = "0.2.0"  # the package version (pyproject.toml reads it); configs have their own VERSION

# Registers the fast path of model.eval() (no-grad forwards run a prepared inference copy) with the models.
from vov3d.runtime import eval_path as _eval_path  # noqa: E402,F401

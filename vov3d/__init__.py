"""vov3d: efficient video classification (VoV3D, X3D and the field's other architectures) in PyTorch."""

__version__ = "0.2.0"  # the package version (pyproject.toml reads it); configs have their own VERSION

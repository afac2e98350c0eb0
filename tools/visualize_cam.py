#!/usr/bin/env python3
"""Grad-CAM of a trained model on videos: PNG frame strips and animated GIF overlays.

The command itself is vov3d/cli/visualize_cam.py (installed as a console script, see pyproject.toml); this file
runs it from a source checkout without installing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vov3d.cli.visualize_cam import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

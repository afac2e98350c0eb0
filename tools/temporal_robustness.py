#!/usr/bin/env python3
"""Temporal robustness (VoV3D paper, Figure 5): test checkpoints at several sampling rates, plot the drop.

The command itself is vov3d/cli/temporal_robustness.py (installed as a console script, see pyproject.toml); this file
runs it from a source checkout without installing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vov3d.cli.temporal_robustness import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Checks the data a run reads before it starts: labels, missing, undecodable and too-short videos, frame counts.

The command itself is vov3d/cli/check_dataset.py (installed as a console script, see pyproject.toml); this file
runs it from a source checkout without installing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vov3d.cli.check_dataset import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Prints the VoV3D paper's Tables 1-8 with every column that needs no training computed next to the paper's.

The command itself is vov3d/cli/paper_tables.py (installed as the console script vov3d-paper-tables, see
pyproject.toml); this file runs it from a source checkout without installing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vov3d.cli.paper_tables import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

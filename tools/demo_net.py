#!/usr/bin/env python3
"""Top-5 labels of a video file, with the same test views as evaluation.

The command itself is vov3d/cli/demo_net.py (installed as a console script, see pyproject.toml); this file
runs it from a source checkout without installing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vov3d.cli.demo_net import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

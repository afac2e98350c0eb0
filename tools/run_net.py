#!/usr/bin/env python3
"""Train and then test a video model: python tools/run_net.py --cfg CONFIG.yaml [KEY VALUE ...]

The command itself is vov3d/cli/run_net.py (installed as a console script, see pyproject.toml); this file
runs it from a source checkout without installing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vov3d.cli.run_net import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

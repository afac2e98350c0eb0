#!/usr/bin/env python3
"""Published weights by name: list them, download one into the cache, or export weights as safetensors.

The command itself is vov3d/cli/weights.py (installed as the console script vov3d-weights, see
pyproject.toml); this file runs it from a source checkout without installing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vov3d.cli.weights import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

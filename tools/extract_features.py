#!/usr/bin/env python3
"""Features and logits of every video of a list, with the multi-view test's views, one file per list.

The command itself is vov3d/cli/extract_features.py (installed as a console script, see pyproject.toml); this file
runs it from a source checkout without installing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vov3d.cli.extract_features import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Export a trained model to ONNX or a torch.export program (.pt2), checked against PyTorch.

The command itself is vov3d/cli/export_net.py (installed as a console script, see pyproject.toml); this file
runs it from a source checkout without installing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vov3d.cli.export_net import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

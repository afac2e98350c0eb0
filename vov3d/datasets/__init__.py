"""Datasets and input pipeline: registry, SSv1 / SSv2 / Kinetics datasets, loaders.

``from vov3d.datasets import loader; loader.construct_loader(cfg, "train" | "val" | "test")``.
Importing this package registers ``ssv1``, ``ssv2`` and ``kinetics`` (lookup is case-insensitive).
"""

from vov3d.datasets.build import DATASET_REGISTRY, build_dataset, get_dataset_class  # noqa: F401
from vov3d.datasets.decode import DecodeError, decode_frames  # noqa: F401
from vov3d.datasets.ssv1 import Ssv1  # noqa: F401  (registers)
from vov3d.datasets.ssv2 import Ssv2  # noqa: F401
from vov3d.datasets.kinetics import Kinetics  # noqa: F401
from vov3d.datasets.demo import Demo  # noqa: F401  (generated data, read as ssv2)
from vov3d.datasets import loader  # noqa: F401,E402

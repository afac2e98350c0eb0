"""Tiny deterministic stand-ins for the engine tests: a model (with or without BN) and a dataset
whose items are pure functions of their index, registered under names no real module uses.

Imported by the engine tests and by the driver scripts they run in subprocesses (torchrun).
"""

import torch
import torch.nn as nn

from vov3d.datasets.build import DATASET_REGISTRY
from vov3d.models.build import MODEL_REGISTRY


class _EngineToyBase(nn.Module):
    CLASSIFIER = "head"
    USE_BN = False

    def __init__(self, cfg):
        super().__init__()
        width = 6
        self.conv = nn.Conv3d(3, width, kernel_size=(1, 3, 3), padding=(0, 1, 1), bias=not self.USE_BN)
        self.bn = nn.BatchNorm3d(width) if self.USE_BN else nn.Identity()
        self.act = nn.ReLU()
        self.head = nn.Linear(width, cfg.MODEL.NUM_CLASSES)

    def forward(self, x):
        x = x[0]
        x = self.act(self.bn(self.conv(x)))
        x = x.mean(dim=(2, 3, 4))
        x = self.head(x)
        return x if self.training else torch.softmax(x, dim=1)


if "EngineToy" not in [k for k, _ in MODEL_REGISTRY]:

    @MODEL_REGISTRY.register()
    class EngineToy(_EngineToyBase):
        """No BN, no dropout: per-process batches give exactly the full-batch gradient."""

    @MODEL_REGISTRY.register()
    class EngineToyBN(_EngineToyBase):
        USE_BN = True


class EngineToyData(torch.utils.data.Dataset):
    """Item i of a split: a fixed random clip (seeded by split and i) plus a class-dependent shift."""

    SIZES = {"train": 8, "val": 5, "test": 5}
    INVALID_TEST = set()  # test indices reported as undecodable
    BAD_TRAIN = {0}  # train indices that report a substituted bad sample

    def __init__(self, cfg, split):
        self.cfg = cfg
        self.split = split
        self.num_classes = cfg.MODEL.NUM_CLASSES
        self.class_names = [f"class_{k}" for k in range(self.num_classes)]

    def __len__(self):
        return self.SIZES[self.split]

    def _clip(self, index, view):
        g = torch.Generator().manual_seed(1000 * {"train": 1, "val": 2, "test": 3}[self.split] + 17 * index + view)
        s = self.cfg.DATA.TRAIN_CROP_SIZE
        x = torch.randn(3, self.cfg.DATA.NUM_FRAMES, s, s, generator=g)
        label = index % self.num_classes
        x[label % 3] += 0.5 + 0.25 * label
        return x

    def __getitem__(self, index):
        label = index % self.num_classes
        meta = {"video_id": f"{self.split}_{index:03d}", "valid": True, "bad_samples": []}
        if self.split == "test":
            views = self.cfg.TEST.NUM_ENSEMBLE_VIEWS * self.cfg.TEST.NUM_SPATIAL_CROPS
            x = torch.stack([self._clip(index, v) for v in range(views)])
            if index in self.INVALID_TEST:
                x.zero_()
                meta["valid"] = False
            return [x], label, index, meta
        if self.split == "train" and index in self.BAD_TRAIN:
            meta["bad_samples"] = [("videos/broken.mp4", "truncated: moov atom not found")]
        return [self._clip(index, 0)], label, index, meta


if "engine_toy" not in [k for k, _ in DATASET_REGISTRY]:
    DATASET_REGISTRY._do_register("engine_toy", EngineToyData)  # a name that is not the class name


def toy_cfg(output_dir, *opts):
    """Returns a loaded config for the toy model / dataset on CPU (extra KEY VALUE `opts` last)."""
    from vov3d.utils.parser import build_parser, config_from_args

    base = [
        "NUM_GPUS", "0", "TRAIN.DATASET", "engine_toy", "TEST.DATASET", "engine_toy",
        "MODEL.MODEL_NAME", "EngineToy", "MODEL.NUM_CLASSES", "3", "DATA.NUM_FRAMES", "2",
        "DATA.TRAIN_CROP_SIZE", "8", "DATA.TEST_CROP_SIZE", "8", "DATA_LOADER.NUM_WORKERS", "0",
        "TRAIN.BATCH_SIZE", "4", "TEST.BATCH_SIZE", "2", "TEST.NUM_ENSEMBLE_VIEWS", "2",
        "TEST.NUM_SPATIAL_CROPS", "3", "SOLVER.MAX_EPOCH", "3", "SOLVER.BASE_LR", "0.1",
        "SOLVER.WARMUP_EPOCHS", "1.0", "TRAIN.EVAL_PERIOD", "1", "TRAIN.CHECKPOINT_PERIOD", "1",
        "LOG_PERIOD", "1", "LOG_MODEL_INFO", "False", "OUTPUT_DIR", str(output_dir), "RNG_SEED", "3",
        "MODEL.MEMORY_FORMAT", "contiguous",
    ]
    args = build_parser().parse_args([])
    args.opts = base + [str(o) for o in opts]
    return config_from_args(args)


def test_toys_register():
    from vov3d.datasets.build import get_dataset_class
    from vov3d.models.build import get_model_class

    assert get_model_class("EngineToy") is not None
    assert get_dataset_class("engine_toy") is EngineToyData

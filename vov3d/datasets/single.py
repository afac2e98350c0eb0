"""One video file seen as a test set of one, with the views of the dataset it stands in for."""

import os

from vov3d.datasets.base import VideoClipDataset, VideoRecord
from vov3d.datasets.build import get_dataset_class


class SingleVideo(VideoClipDataset):
    """A single video file tested like `like` (a registered dataset name) tests its videos.

    It takes that dataset's temporal sampling (segments or dense clips) and channel convention, so
    ``SingleVideo(cfg, path, cfg.TEST.DATASET)[0]`` gives exactly the views evaluation would give.
    """

    name = "video"

    def __init__(self, cfg, path, like):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Video not found: {path}")
        stand_in = get_dataset_class(like)
        self.sampling = stand_in.sampling
        self.official_bgr = stand_in.official_bgr
        self.video_path = os.path.abspath(path)
        folder = os.path.dirname(self.video_path)
        super().__init__(cfg, "test", data_dir=folder, media_dir=folder)

    def _load(self):
        self.annotation_path = self.video_path
        return [VideoRecord(os.path.basename(self.video_path), -1, self.video_path)], []

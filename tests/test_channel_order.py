"""The model sees the channel order the official pipeline gave it for the same config."""

import pytest
import torch

from vov3d.config.defaults import get_cfg
from vov3d.datasets import Kinetics, Ssv1, Ssv2
from vov3d.datasets.demo import Demo
from vov3d.datasets.transforms import ClipTransform


def red_clip():
    frames = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)  # (T, C, H, W) as normalize takes it
    frames[:, 0] = 255
    return frames


@pytest.mark.parametrize("reverse,official_bgr,first_channel_red", [
    (True, True, True),    # official SS configs: OpenCV BGR frames flipped -> RGB
    (False, True, False),  # official X3D-L SS config: the model saw BGR
    (False, False, True),  # Kinetics: PyAV RGB
    (True, False, False),  # Kinetics with the key set: BGR
])
def test_channel_rule(reverse, official_bgr, first_channel_red):
    cfg = get_cfg()
    cfg.merge_from_list(["DATA.REVERSE_INPUT_CHANNEL", reverse, "DATA.MEAN", [0.0, 0.0, 0.0], "DATA.STD", [1.0, 1.0, 1.0]])
    clip = ClipTransform(cfg, official_bgr=official_bgr).normalize(red_clip())
    assert (clip[0].max().item() == 1.0) == first_channel_red
    assert (clip[2].max().item() == 1.0) != first_channel_red


def test_datasets_declare_the_official_decoder_order():
    assert Ssv1.official_bgr and Ssv2.official_bgr and Demo.official_bgr
    assert not Kinetics.official_bgr


def test_official_torchvision_backend_reads_as_pyav():
    from vov3d.datasets.decode import resolve_backend

    assert resolve_backend("torchvision") == "pyav"
    with pytest.raises(ValueError, match="DECODING_BACKEND"):
        resolve_backend("decord")

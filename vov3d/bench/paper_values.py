"""The VoV3D paper's published figures (Lee et al., IEEE Access 2021, arXiv 2012.08420 v3), as printed.

Each value names its table and row. Where a table's body is not legible in the source we hold (Tables 4,
6 and 8), the entry says so; Table 6's SSv2 figures are the official README's April 2021 revision,
which agrees with Table 5 wherever both give a number. `README_2020` holds the December 2020 README
figures that earlier versions of MODEL_ZOO.md quoted, so the documentation can say where they differ.
Accuracies are top-1 / top-5 (%); GFLOPs are per view; params in millions.
"""

# Table 1: the middle conv of a bottleneck (C in = C out, kernel t x k x k, spatial stride s), as
# functions of C, T, H, W, t, k, s. FLOPs are multiply-adds over the T x H/s x W/s output.
TABLE1_FORMULAS = {
    "conv3d": ("(a) 3D conv", "C^2 t k^2", "C^2 t k^2 (HWT)/s^2",
               lambda C, T, H, W, t, k, s: (C * C * t * k * k, C * C * t * k * k * H * W * T / s**2)),
    "r2plus1d": ("(b) R(2+1)D", "C^2 (t + k^2)", "C^2 (t + k^2)(HWT)/s^2",
                 lambda C, T, H, W, t, k, s: (C * C * (t + k * k), C * C * (t + k * k) * H * W * T / s**2)),
    "dw3d": ("(c) depthwise 3D", "C t k^2", "C t k^2 (HWT)/s^2",
             lambda C, T, H, W, t, k, s: (C * t * k * k, C * t * k * k * H * W * T / s**2)),
    "d1plus2d": ("(d) D(1+2)D", "C (t + k^2)", "C (s^2 t + k^2)(HWT)/s^2",
                 lambda C, T, H, W, t, k, s: (C * (t + k * k), C * (s * s * t + k * k) * H * W * T / s**2)),
    "d2plus1d": ("(e) D(2+1)D", "C (t + k^2)", "C (t + k^2)(HWT)/s^2",
                 lambda C, T, H, W, t, k, s: (C * (t + k * k), C * (t + k * k) * H * W * T / s**2)),
}

# Table 2: VoV3D-M (L) at T x 224^2. Per stage: unit width, units per T-OSA, aggregation width,
# T-OSA blocks, output H (= W). Stem and conv5 give their width and output H.
TABLE2 = {
    "M": {"conv1": {"out_h": 112}, "conv5": {"width": 320, "out_h": 7},
          "s2": {"unit_width": 40, "units": 5, "agg_width": 24, "blocks": 1, "out_h": 56},
          "s3": {"unit_width": 80, "units": 5, "agg_width": 48, "blocks": 1, "out_h": 28},
          "s4": {"unit_width": 160, "units": 5, "agg_width": 96, "blocks": 2, "out_h": 14},
          "s5": {"unit_width": 320, "units": 5, "agg_width": 160, "blocks": 2, "out_h": 7},
          "params_m": 3.3},
    "L": {"conv1": {"out_h": 112}, "conv5": {"width": 384, "out_h": 7},
          "s2": {"unit_width": 48, "units": 5, "agg_width": 24, "blocks": 1, "out_h": 56},
          "s3": {"unit_width": 96, "units": 5, "agg_width": 48, "blocks": 2, "out_h": 28},
          "s4": {"unit_width": 192, "units": 5, "agg_width": 96, "blocks": 5, "out_h": 14},
          "s5": {"unit_width": 384, "units": 5, "agg_width": 192, "blocks": 3, "out_h": 7},
          "params_m": 5.8},
}

# Table 3: contributions on SSv1, 16 frames (top-1, top-5 as printed; the printed gains in brackets).
TABLE3 = [
    # (size, T-OSA, D(2+1)D, top1, top5, printed top-1 gain, printed top-5 gain)
    ("M", False, False, 46.4, 75.3, None, None),
    ("M", True, False, 48.0, 76.7, 2.4, 1.4),
    ("M", False, True, 48.5, 76.9, 2.3, 1.6),
    ("M", True, True, 49.0, 78.2, 2.6, 2.9),
    ("L", False, False, 47.1, 76.5, None, None),
    ("L", True, False, 48.9, 77.6, 1.8, 1.1),
    ("L", False, True, 48.8, 77.4, 1.7, 0.9),
    ("L", True, True, 49.6, 78.1, 2.5, 1.6),
]

# Table 4: the unit inside T-OSA (a)-(e) and X3D with D(2+1)D; body not legible in our source.
# The text: X3D with D(2+1)D gains about 1% top-1 "with fewer params and GFLOPs" than X3D.
TABLE4_UNITS = ["conv3d", "r2plus1d", "dw3d", "d1plus2d", "d2plus1d"]

# Table 5: SSv1, 2 clips x 3 crops. (model, frames, GFLOPs/view, views, scratch t1, t5, K400-ft t1, t5).
TABLE5 = [
    ("X3D-M", 16, 6.1, 6, 46.4, 75.3, 51.2, 78.9),
    ("VoV3D-M", 16, 6.4, 6, 49.0, 78.2, 52.4, 80.3),
    ("X3D-M", 32, 12.3, 6, 48.9, 77.6, 51.5, 79.6),
    ("VoV3D-M", 32, 12.8, 6, 50.1, 79.2, 53.3, 81.2),
    ("X3D-L", 16, 11.9, 6, 47.1, 76.5, 50.8, 79.3),
    ("VoV3D-L", 16, 12.1, 6, 49.6, 78.1, 53.4, 81.4),
    ("X3D-L", 32, 23.9, 6, 48.4, 77.8, 52.6, 81.2),
    ("VoV3D-L", 32, 24.3, 6, 50.7, 78.8, 54.7, 82.0),
]
TABLE5_PARAMS_M = {"X3D-M": 3.3, "VoV3D-M": 3.3, "X3D-L": 5.6, "VoV3D-L": 5.8}

# Table 6 (SSv2 part): the official README's April 2021 revision, 2 x 3 views. (model, frames, K400
# fine-tuned, top-1, top-5). The table body itself is not legible in our source.
TABLE6_SSV2 = [
    ("X3D-M", 16, False, 63.1, 88.0),
    ("VoV3D-M", 16, False, 63.6, 88.6),
    ("VoV3D-M", 32, False, 64.3, 88.9),
    ("VoV3D-M", 32, True, 65.8, 89.6),
    ("X3D-L", 16, False, 62.7, 87.8),
    ("VoV3D-L", 16, False, 64.5, 88.7),
    ("VoV3D-L", 32, False, 65.9, 89.6),
    ("VoV3D-L", 32, True, 67.4, 90.5),
]

# Table 7: Kinetics-400, 10 clips x 3 crops. (model, pretrain, frames, params M, GFLOPs/view, views,
# top-1, top-5); None = "N/A" / "-" in the paper.
TABLE7 = [
    ("I3D", "IN", 64, 12.0, 108.0, None, 71.1, 90.3),
    ("Nonlocal R50", "IN", 32, 35.3, 282.0, 30, 76.5, 92.6),
    ("TSM", "IN", 16, 24.3, 65.0, 30, 74.7, None),
    ("STM", "IN", 16, None, 67.0, 30, 73.7, 91.6),
    ("TEA R50", "IN", 16, 24.4, 70.0, 30, 76.1, 92.5),
    ("R(2+1)D", None, 16, 63.6, 152.0, 115, 72.0, 90.0),
    ("SlowFast 4x16, R50", None, 32, 34.4, 36.1, 30, 75.6, 92.1),
    ("ip-CSN-152", None, 32, 32.8, 109.0, 30, 77.8, 92.8),
    ("X3D-M", None, 16, 3.8, 6.2, 30, 75.1, 92.2),
    ("X3D-L", None, 16, 6.1, 9.1, 30, 76.1, 92.6),
    ("VoV3D-M", None, 16, 3.7, 6.4, 30, 74.7, 92.1),
    ("VoV3D-L", None, 16, 6.2, 9.3, 30, 76.3, 92.9),
]

# Table 8: params, activations, GPU memory and sec/video at batch 16 on one V100 (PySlowFast, CUDA 10.1,
# PyTorch 1.6) for Table 4's (b), (c), (e) models, VoV3D-L-32, X3D, SlowFast-R50 and MViT-32. Body not
# legible in our source; the text: D(2+1)D uses less memory than R(2+1)D and runs about 2x faster;
# VoV3D-L-32 uses about half the memory of SlowFast-R50 and runs about 2x faster.
TABLE8_BATCH = 16

# The official README's December 2020 figures (quoted by earlier MODEL_ZOO.md versions), for the notes
# on where it differs from the paper. (dataset, model, frames, K400 fine-tuned) -> (params M, GFLOPs/view,
# top-1, top-5); None where it gave none.
README_2020 = {
    ("SSv1", "X3D-M", 16, False): (3.3, 6.1, 46.4, 75.3),
    ("SSv1", "VoV3D-M", 16, False): (3.3, 5.7, 48.1, 76.9),
    ("SSv1", "VoV3D-M", 32, False): (3.3, 11.5, 49.8, 78.0),
    ("SSv1", "VoV3D-M", 32, True): (3.3, 11.5, 52.6, 80.4),
    ("SSv1", "X3D-L", 16, False): (5.6, 9.1, 47.0, 76.4),
    ("SSv1", "VoV3D-L", 16, False): (5.8, 9.3, 49.5, 78.0),
    ("SSv1", "VoV3D-L", 32, False): (5.8, 20.9, 50.6, 78.7),
    ("SSv1", "VoV3D-L", 32, True): (5.8, 20.9, 54.9, 82.3),
    ("SSv2", "X3D-M", 16, False): (3.3, 6.1, 63.0, 87.9),
    ("SSv2", "VoV3D-M", 16, False): (3.3, 5.7, 63.2, 88.2),
    ("SSv2", "VoV3D-M", 32, False): (3.3, 11.5, 64.2, 88.8),
    ("SSv2", "VoV3D-M", 32, True): (3.3, 11.5, 65.2, 89.4),
    ("SSv2", "X3D-L", 16, False): (5.6, 9.1, 62.7, 87.7),
    ("SSv2", "VoV3D-L", 16, False): (5.8, 9.3, 64.1, 88.6),
    ("SSv2", "VoV3D-L", 32, False): (5.8, 20.9, 65.8, 89.5),
    ("SSv2", "VoV3D-L", 32, True): (5.8, 20.9, 67.3, 90.5),
    ("K400", "X3D-M", 16, False): (3.8, 6.2, 75.0, 92.1),
    ("K400", "VoV3D-M", 16, False): (3.8, 4.4, 73.9, 91.6),
    ("K400", "X3D-L", 16, False): (6.1, 9.1, 76.1, None),
    ("K400", "VoV3D-L", 16, False): (6.2, 9.3, 76.3, 92.9),
}

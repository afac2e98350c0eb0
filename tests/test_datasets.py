"""Datasets on tiny generated copies of each released layout: labels, paths, items, views."""

import json
import logging
import os
import re
import shutil

import pytest
import torch

from vov3d.config.defaults import get_cfg
from vov3d.datasets import build_dataset, get_dataset_class, synthetic
from vov3d.datasets.synthetic import read_frame_code

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
T = 4  # NUM_FRAMES of every test clip


def tiny_cfg(data, name, *opts):
    cfg = get_cfg()
    cfg.merge_from_list(data.cfg_opts() + ["TRAIN.DATASET", name, "TEST.DATASET", name, "NUM_GPUS", 0])
    cfg.merge_from_list(["DATA.NUM_FRAMES", T, "DATA.SAMPLING_RATE", 2, "DATA.TARGET_FPS", 15,
                         "DATA.TRAIN_JITTER_SCALES", [48, 56], "DATA.TRAIN_CROP_SIZE", 40, "DATA.TEST_CROP_SIZE", 48,
                         "DATA.MEAN", [0.0, 0.0, 0.0], "DATA.STD", [1 / 255.0] * 3,  # identity: pixel codes readable
                         "TEST.NUM_ENSEMBLE_VIEWS", 2, "TEST.NUM_SPATIAL_CROPS", 3, "DATA.RANDOM_FLIP", False])
    cfg.merge_from_list(list(opts))
    return cfg


def clip_codes(clip):
    """Frame codes of a (C, T, H, W) clip normalised with the identity MEAN/STD above."""
    return [read_frame_code(clip[:, t].clamp(0, 255)) for t in range(clip.shape[1])]


@pytest.fixture(scope="module")
def ssv1(tmp_path_factory):
    return synthetic.make_ssv1(str(tmp_path_factory.mktemp("ssv1")))


@pytest.fixture(scope="module")
def ssv2(tmp_path_factory):
    return synthetic.make_ssv2(str(tmp_path_factory.mktemp("ssv2")), frame_lists=True)


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory):
    return synthetic.make_kinetics(str(tmp_path_factory.mktemp("k400")))


def test_registry_names_are_case_insensitive():
    assert get_dataset_class("ssv1") is get_dataset_class("Ssv1") is get_dataset_class("SSV1")
    for name in ("ssv2", "kinetics"):
        get_dataset_class(name)
    with pytest.raises(KeyError, match="nope"):
        get_dataset_class("nope")


# ---------------------------------------------------------------------------------------------- #
# SSv1
# ---------------------------------------------------------------------------------------------- #
def test_ssv1_file_label_order_and_items(ssv1):
    # Jitter fixed at the crop size: the crop keeps the full height, so frame codes stay readable.
    cfg = tiny_cfg(ssv1, "ssv1", "DATA.TRAIN_JITTER_SCALES", [40, 40])
    ds = build_dataset("ssv1", cfg, "train")
    assert ds.class_names == ssv1.class_names and ds.class_names != sorted(ds.class_names)
    truth = {v.video_id: v for v in ssv1.split("train")}
    assert ds.video_ids == [v.video_id for v in ssv1.split("train")]
    for i in range(len(ds)):
        inputs, label, index, meta = ds[i]
        video = truth[meta["video_id"]]
        assert label == video.label and index == i and meta["valid"] and meta["bad_samples"] == []
        assert isinstance(inputs, list) and inputs[0].shape == (3, T, 40, 40) and inputs[0].dtype == torch.float32
        codes = clip_codes(inputs[0])
        n = video.num_frames
        assert all(int(s * n / T) <= c < int((s + 1) * n / T) + 1 for s, c in enumerate(codes)), codes


def test_ssv1_sorted_label_order(ssv1):
    ds = build_dataset("ssv1", tiny_cfg(ssv1, "ssv1", "DATA.SS_LABEL_ORDER", "sorted"), "val")
    assert ds.class_names == sorted(ssv1.class_names)
    by_id = {v.video_id: v for v in ssv1.split("val")}
    for vid, label in zip(ds.video_ids, ds.labels):
        assert ds.class_names[label] == by_id[vid].label_text


def test_ssv1_crlf_no_final_newline_and_flat_media(tmp_path):
    data = synthetic.make_ssv1(str(tmp_path), crlf=True, final_newline=False, subfolder=False)
    ds = build_dataset("ssv1", tiny_cfg(data, "ssv1"), "val")
    assert [ds.class_names[l] for l in ds.labels] == [v.label_text for v in data.split("val")]


def test_ssv1_val_and_test_read_validation_test_override_reads_unlabelled(ssv1):
    cfg = tiny_cfg(ssv1, "ssv1")
    assert build_dataset("ssv1", cfg, "test").video_ids == [v.video_id for v in ssv1.split("val")]
    cfg = tiny_cfg(ssv1, "ssv1", "DATA.TEST_ANNOTATION", "something-something-v1-test.csv")
    ds = build_dataset("ssv1", cfg, "test")
    assert ds.video_ids == [v.video_id for v in ssv1.split("test")] and set(ds.labels) == {-1}


def test_missing_annotation_names_key(tmp_path, ssv1):
    cfg = tiny_cfg(ssv1, "ssv1", "DATA.PATH_TO_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="DATA.PATH_TO_DATA_DIR"):
        build_dataset("ssv1", cfg, "train")
    cfg = tiny_cfg(ssv1, "ssv1", "DATA.PATH_TO_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="something-something-v1-labels.csv"):
        build_dataset("ssv1", cfg, "train")
    cfg = tiny_cfg(ssv1, "ssv1", "DATA.VAL_ANNOTATION", "nope.csv")
    with pytest.raises(FileNotFoundError, match="DATA.VAL_ANNOTATION"):
        build_dataset("ssv1", cfg, "val")


def test_missing_videos_reported_and_dropped(tmp_path, caplog):
    data = synthetic.make_ssv1(str(tmp_path), videos_per_split={"train": 5, "val": 1, "test": 0})
    gone = data.split("train")[1:3]
    for v in gone:
        shutil.rmtree(v.path)
    with caplog.at_level(logging.WARNING):
        ds = build_dataset("ssv1", tiny_cfg(data, "ssv1"), "train")
    assert len(ds) == 3 and not set(ds.video_ids) & {v.video_id for v in gone}
    assert "2 of 5 listed videos are missing" in caplog.text and gone[0].path in caplog.text
    assert [r.video_id for r in ds.missing] == [v.video_id for v in gone]


# ---------------------------------------------------------------------------------------------- #
# SSv2
# ---------------------------------------------------------------------------------------------- #
def test_ssv2_template_brackets_and_label_json(ssv2):
    ds = build_dataset("ssv2", tiny_cfg(ssv2, "ssv2"), "train")
    assert ds.class_names == ssv2.class_names == sorted(ssv2.class_names)
    assert "Putting number of something onto something" in ds.class_names
    assert "Something falling like a rock" in ds.class_names
    entries = json.load(open(ssv2.files["train"]))
    for e, label in zip(entries, ds.labels):
        assert ds.class_names[label] == e["template"].replace("[", "").replace("]", "")
    inputs, _, _, meta = ds[0]
    assert meta["path"].endswith(".webm") and inputs[0].shape == (3, T, 40, 40)


@pytest.mark.parametrize("naming", ["20bn", "qualcomm"])
def test_ssv2_naming_schemes_and_test_answers(tmp_path, naming):
    data = synthetic.make_ssv2(str(tmp_path), naming=naming, subfolder=naming == "20bn")
    val = build_dataset("ssv2", tiny_cfg(data, "ssv2"), "val")
    assert val.labels == [v.label for v in data.split("val")]
    test_json = os.path.relpath(data.files["test"], data.data_dir)
    test = build_dataset("ssv2", tiny_cfg(data, "ssv2", "DATA.TEST_ANNOTATION", test_json), "test")
    assert test.labels == [v.label for v in data.split("test")] and min(test.labels) >= 0  # from test-answers.csv


def test_ssv2_frame_lists_match_videos(ssv2):
    # Same ids, labels and sampled frames from the PySlowFast frame lists as from the webm files.
    video = build_dataset("ssv2", tiny_cfg(ssv2, "ssv2", "DATA.SS_SOURCE", "video"), "val")
    frames = build_dataset("ssv2", tiny_cfg(ssv2, "ssv2", "DATA.SS_SOURCE", "frames"), "val")
    assert frames.video_ids == video.video_ids and frames.labels == video.labels
    assert "jpg" in frames.records[0].source.files[0]
    for i in range(len(video)):
        a, b = video[i][0][0], frames[i][0][0]
        assert clip_codes(a) == clip_codes(b)


def test_ssv2_reusable_with_other_root(ssv2, tmp_path):
    cls = get_dataset_class("ssv2")
    cfg = get_cfg()  # paths not set in the config: given to the constructor (the demo dataset does this)
    cfg.merge_from_list(["DATA.NUM_FRAMES", T])
    ds = cls(cfg, "val", data_dir=ssv2.data_dir, media_dir=ssv2.prefix)
    assert len(ds) == len(ssv2.split("val"))


# ---------------------------------------------------------------------------------------------- #
# Kinetics
# ---------------------------------------------------------------------------------------------- #
def test_kinetics_release_csv_class_dirs(kinetics):
    ds = build_dataset("kinetics", tiny_cfg(kinetics, "kinetics"), "val")
    assert ds.class_names == kinetics.class_names == sorted(kinetics.class_names)
    assert ds.annotation_path.endswith("validate.csv")
    assert [ds.class_names[l] for l in ds.labels] == [v.label_text for v in kinetics.split("val")]
    assert [r.path for r in ds.records] == [v.path for v in kinetics.split("val")]
    inputs, label, _, meta = ds[0]
    assert inputs[0].shape == (3, T, 48, 48)
    codes = clip_codes(inputs[0])  # val: the middle clip, frames SAMPLING_RATE / TARGET_FPS * fps apart
    assert [b - a for a, b in zip(codes, codes[1:])] == [2] * (T - 1)  # 2/15 s apart in a 15 fps video


@pytest.mark.parametrize("layout,style", [("flat", "spaces"), ("class_dirs", "underscores")])
def test_kinetics_layouts(tmp_path, layout, style):
    data = synthetic.make_kinetics(str(tmp_path), layout=layout, class_dir_style=style, annotations=("official",),
                                   videos_per_split={"train": 3, "val": 2, "test": 0}, val_csv_name="val.csv")
    ds = build_dataset("kinetics", tiny_cfg(data, "kinetics"), "train")
    assert [r.path for r in ds.records] == [v.path for v in data.split("train")]
    assert ds.labels == [v.label for v in data.split("train")]


def test_kinetics_pyslowfast_lists(kinetics):
    cfg = tiny_cfg(kinetics, "kinetics", "DATA.PATH_TO_DATA_DIR", kinetics.root)
    ds = build_dataset("kinetics", cfg, "train")
    assert ds.annotation_path == os.path.join(kinetics.root, "train.csv")
    assert ds.labels == [v.label for v in kinetics.split("train")]
    assert [r.path for r in ds.records] == [v.path for v in kinetics.split("train")]
    # Class folders with spaces survive the space separator; names come from the folders.
    assert set(ds.class_names) <= set(kinetics.class_names)


def test_kinetics_missing_rows(tmp_path, caplog):
    data = synthetic.make_kinetics(str(tmp_path), annotations=("official",),
                                   videos_per_split={"train": 4, "val": 1, "test": 0})
    os.remove(data.split("train")[0].path)
    with caplog.at_level(logging.WARNING):
        ds = build_dataset("kinetics", tiny_cfg(data, "kinetics"), "train")
    assert len(ds) == 3 and "1 of 4 listed videos are missing" in caplog.text
    assert data.split("train")[0].video_id in caplog.text


# ---------------------------------------------------------------------------------------------- #
# Test views
# ---------------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", ["ssv1", "ssv2", "kinetics"])
def test_test_item_has_all_views_in_order_and_is_deterministic(name, ssv1, ssv2, kinetics):
    data = {"ssv1": ssv1, "ssv2": ssv2, "kinetics": kinetics}[name]
    ds = build_dataset(name, tiny_cfg(data, name), "test")
    inputs, label, index, meta = ds[1]
    views = inputs[0]
    assert views.shape == (6, 3, T, 48, 48) and index == 1 and meta["valid"] and meta["num_decodes"] == 1
    assert meta["video_id"] == ds.video_ids[1] and label == ds.labels[1]
    assert torch.equal(views, ds[1][0][0])  # deterministic
    clip0, clip1 = clip_codes(views[0]), clip_codes(views[3])
    for crop in (1, 2):
        assert clip_codes(views[crop]) == clip0 and clip_codes(views[3 + crop]) == clip1
    if name == "kinetics":
        assert clip0[0] <= clip1[0]  # uniformly spaced clips, in order
    else:
        assert all(a < b for a, b in zip(clip0, clip1))  # offsets 0.25 / 0.75 of each segment


@pytest.mark.parametrize("name", ["ssv1", "kinetics"])
def test_videos_shorter_than_the_clip_repeat_frames_as_the_official_sampling_does(name, ssv1, kinetics):
    # SSv1 holds videos shorter than 32 frames; the official code samples them with repeated frames.
    data = {"ssv1": ssv1, "kinetics": kinetics}[name]
    longest = max(v.num_frames for v in data.videos)
    frames = longest + 5  # every video is shorter than the clip
    for split in ("train", "test"):
        ds = build_dataset(name, tiny_cfg(data, name, "DATA.NUM_FRAMES", frames, "DATA.SAMPLING_RATE", 1,
                                          "DATA.TRAIN_JITTER_SCALES", [48, 48]), split)
        inputs, _, _, meta = ds[0]
        assert meta["valid"] and meta["bad_samples"] == [], meta
        codes = clip_codes(inputs[0] if split == "train" else inputs[0][0])
        assert len(codes) == frames and codes == sorted(codes) and len(set(codes)) < frames
    strict = build_dataset(name, tiny_cfg(data, name, "DATA.NUM_FRAMES", frames, "DATA.MIN_VIDEO_FRAMES", frames), "val")
    with pytest.raises(Exception, match="too few frames"):  # the key still makes short videos bad data
        strict[0]


# ---------------------------------------------------------------------------------------------- #
# Splits, labels and list formats from other sources
# ---------------------------------------------------------------------------------------------- #
def _copy_lists(kinetics, tmp_path, **lists):
    """A PySlowFast-style annotation folder next to `kinetics`'s media, with the given list files."""
    folder = tmp_path / "lists"
    folder.mkdir(parents=True)
    for name, lines in lists.items():
        (folder / name.replace("__", ".")).write_text("".join(line + "\n" for line in lines))
    return str(folder)


def _list_lines(kinetics, split):
    media = os.path.join(kinetics.root, "videos")
    return [f"{os.path.relpath(v.path, media)} {v.label}" for v in kinetics.split(split)]


def test_pyslowfast_test_split_reads_test_csv_else_val_csv(kinetics, tmp_path, caplog):
    train, val, test = (_list_lines(kinetics, s) for s in ("train", "val", "test"))
    folder = _copy_lists(kinetics, tmp_path, train__csv=train, val__csv=val, test__csv=test)
    cfg = tiny_cfg(kinetics, "kinetics", "DATA.PATH_TO_DATA_DIR", folder)
    with caplog.at_level(logging.INFO):
        ds = build_dataset("kinetics", cfg, "test")
    assert ds.annotation_path == os.path.join(folder, "test.csv")
    assert ds.video_ids == [os.path.splitext(os.path.basename(v.path))[0] for v in kinetics.split("test")]
    assert "test.csv" in caplog.text  # the log names the file the split reads
    assert build_dataset("kinetics", cfg, "val").annotation_path == os.path.join(folder, "val.csv")
    os.remove(os.path.join(folder, "test.csv"))
    assert build_dataset("kinetics", cfg, "test").annotation_path == os.path.join(folder, "val.csv")


def _write(path, lines):
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


@pytest.mark.parametrize("case", ["ssv1", "ssv1_unlabelled_train", "ssv2", "kinetics_release", "list_high",
                                  "list_unlabelled_train"])
def test_labels_outside_num_classes_stop_at_build_naming_file_line_value(case, ssv1, ssv2, kinetics, tmp_path):
    name = case.split("_")[0] if case.startswith("ss") else "kinetics"
    data = {"ssv1": ssv1, "ssv2": ssv2, "kinetics": kinetics}[name]
    opts, split = ["MODEL.NUM_CLASSES", 100], "train"
    if case == "ssv1":  # 4 classes in the labels CSV, a model with 2 outputs
        opts, split = ["MODEL.NUM_CLASSES", 2], "val"
        path = ssv1.files["val"]
        bad_line = next(n for n, v in enumerate(ssv1.split("val"), 1) if v.label >= 2)
        expected = rf"{path}:{bad_line}: label \d+ is outside \[0, 2\)"
    elif case == "ssv1_unlabelled_train":
        path = str(tmp_path / "train.csv")
        _write(path, [f"{v.video_id};{v.label_text}" for v in ssv1.split("train")[:2]] + [ssv1.split("train")[2].video_id])
        opts += ["DATA.TRAIN_ANNOTATION", path]
        expected = rf"{path}:3: no label in a training list"
    elif case == "ssv2":
        opts = ["MODEL.NUM_CLASSES", 1]
        expected = r"train.json \(entry \d+, id \w+\): label \d+ is outside \[0, 1\)"
    elif case == "kinetics_release":
        opts = ["MODEL.NUM_CLASSES", 1]
        bad_line = next(n for n, v in enumerate(kinetics.split("train"), 2) if v.label >= 1)
        expected = rf"annotations/train.csv:{bad_line}: label \d+ is outside \[0, 1\)"
    else:
        lines = _list_lines(kinetics, "train")
        lines[1] = lines[1].rsplit(" ", 1)[0] + (" 100" if case == "list_high" else "")
        folder = _copy_lists(kinetics, tmp_path, train__csv=lines)
        opts += ["DATA.PATH_TO_DATA_DIR", folder]
        expected = r"train.csv:2: " + ("label 100 is outside \\[0, 100\\)" if case == "list_high" else "no label")
    cfg = tiny_cfg(data, name, *opts)
    with pytest.raises(ValueError, match=expected) as e:
        build_dataset(name, cfg, split)
    assert "\n" not in str(e.value)


def test_unlabelled_lines_are_fine_outside_training(kinetics, tmp_path):
    folder = _copy_lists(kinetics, tmp_path, train__csv=_list_lines(kinetics, "train"),
                         val__csv=[line.rsplit(" ", 1)[0] for line in _list_lines(kinetics, "val")])
    ds = build_dataset("kinetics", tiny_cfg(kinetics, "kinetics", "DATA.PATH_TO_DATA_DIR", folder), "val")
    assert set(ds.labels) == {-1}


def test_mmaction2_video_and_rawframe_lists(kinetics, tmp_path):
    # MMAction2 names: <dataset>_<split>_list_videos.txt / _list_rawframes.txt, found without overrides.
    folder = _copy_lists(kinetics, tmp_path, k400_train_list_videos__txt=_list_lines(kinetics, "train"))
    ds = build_dataset("kinetics", tiny_cfg(kinetics, "kinetics", "DATA.PATH_TO_DATA_DIR", folder), "train")
    assert ds.annotation_path.endswith("k400_train_list_videos.txt")
    assert ds.labels == [v.label for v in kinetics.split("train")] and len(ds.missing) == 0

    frames = tmp_path / "rawframes"
    lines = []
    for k, n in enumerate((9, 12, 10)):  # MMAction2's extraction names: img_00001.jpg ...
        synthetic.write_frames(str(frames / "air drumming" / f"v{k}"), n, 64, 48, template="img_{:05d}.jpg")
        lines.append(f"air drumming/v{k} {n} {k % 2}")
    folder = _copy_lists(kinetics, tmp_path / "r", train__csv=lines)
    cfg = tiny_cfg(kinetics, "kinetics", "DATA.PATH_TO_DATA_DIR", folder, "DATA.PATH_PREFIX", str(frames))
    with pytest.raises(ValueError, match=r"named \['img_00001.jpg'.*DATA.FRAME_TEMPLATE"):
        build_dataset("kinetics", cfg, "train")
    cfg.merge_from_list(["DATA.FRAME_TEMPLATE", "img_{:05d}.jpg", "DATA.TEMPORAL_SAMPLING", "segment"])
    ds = build_dataset("kinetics", cfg, "train")
    assert ds.video_ids == ["v0", "v1", "v2"] and ds.labels == [0, 1, 0] and len(ds.missing) == 0
    decoded = ds.decode_record(ds.records[1], 0, 1)
    assert decoded.num_frames == 12
    assert [read_frame_code(f) for f in decoded.ordered()] == [1, 4, 7, 10]  # segment centres of 12 frames


@pytest.mark.parametrize("content,message", [
    (["test.mp4 0 3", "test.mp4 0 2 4"], "several labels after a video path"),  # MMAction2 multi-label video list
    (["imgs 5 1", "imgs 5 3 5"], "more than two numbers after a frame folder"),  # multi-label rawframes
    (["imgs 2 5 127", "imgs 2 5 127"], "more than two numbers after a frame folder"),  # rawframes with offset
    (['[{"filename": "test.mp4", "label": 0}]'], "JSON annotations are not a supported list format"),
    (["a/b.mp4,3", "a/c.mp4,1"], "set DATA.PATH_LABEL_SEPARATOR ','"),
    (["imgs 5 1", "a/b.mp4 3"], "a video line in a rawframes list"),
])
def test_unsupported_list_formats_say_so_in_one_line(content, message, kinetics, tmp_path):
    folder = _copy_lists(kinetics, tmp_path, train__csv=content)
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        build_dataset("kinetics", tiny_cfg(kinetics, "kinetics", "DATA.PATH_TO_DATA_DIR", folder), "train")
    assert "\n" not in str(e.value) and "missing" not in str(e.value) and "train.csv" in str(e.value)

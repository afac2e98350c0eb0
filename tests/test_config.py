"""The config tree, the PySlowFast compatibility table, the loader and validate()."""

import ast
import contextlib
import glob
import importlib.util
import io
import logging
import os
import re

import pytest

from conftest import REPO, require_reference
from vov3d.config import ConfigError, compat, get_cfg, load_config, validate
from vov3d.config.defaults import RULES, _C
from vov3d.models import build_model
from vov3d.engine import solver as lr_policy
from yacs.config import CfgNode

# A PySlowFast checkout (facebookresearch/SlowFast) to load its own configs from; skipped when unset.
PYSLOWFAST_DIR = os.environ.get("VOV3D_PYSLOWFAST_DIR", "")


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees the once-per-process compat warnings afresh."""
    monkeypatch.setattr(compat, "_warned", set())


def tree_keys(node=None, prefix=""):
    node = _C if node is None else node
    out = []
    for name, value in node.items():
        if isinstance(value, CfgNode):
            out += tree_keys(value, prefix + name + ".")
        else:
            out.append(prefix + name)
    return out


def tree_sections(node=None, prefix=""):
    node = _C if node is None else node
    out = set()
    for name, value in node.items():
        if isinstance(value, CfgNode):
            out.add(prefix + name)
            out |= tree_sections(value, prefix + name + ".")
    return out


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------- #
# The tree holds what vov3d reads
# ---------------------------------------------------------------------------- #
def _key_reads(path, sections):
    """Returns the key paths a source file reads: cfg.A.B chains, through aliases such as `d = cfg.DATA`,
    `.get("KEY")` on a section, and string constants that are a whole key path (tables of keys)."""
    tree = ast.parse(open(path, encoding="utf-8").read())

    def upper_chain(node):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        parts.reverse()
        return node, [p for p in parts if p[:1].isupper() and p.upper() == p.replace("3x3x3", "3X3X3")]

    aliases = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            _, chain = upper_chain(n.value) if isinstance(n.value, ast.Attribute) else (None, [])
            if chain and ".".join(chain) in sections:
                aliases.setdefault(n.targets[0].id, set()).add(".".join(chain))

    def resolve(node):
        base, chain = upper_chain(node)
        if not chain:
            return set()
        found = {".".join(chain)}
        if isinstance(base, ast.Name):
            found |= {a + "." + ".".join(chain) for a in aliases.get(base.id, ())}
        return found

    reads = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute):
            reads |= resolve(n)
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "get" and n.args
              and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)):
            bases = resolve(n.func.value)
            if isinstance(n.func.value, ast.Name):
                bases |= aliases.get(n.func.value.id, set())
            reads |= {b + "." + n.args[0].value for b in bases}
        elif isinstance(n, ast.Constant) and isinstance(n.value, str) and re.fullmatch(r"[A-Z0-9_.]+", n.value):
            reads.add(n.value)
    return reads


def test_every_tree_key_is_read_by_the_code():
    """A key in defaults.py that no code reads fails here: move it to compat.py or delete it."""
    sections = tree_sections()
    skip = {os.path.join("vov3d", "config", "defaults.py"), os.path.join("vov3d", "config", "compat.py")}
    reads = set()
    for root in ("vov3d", "tools"):
        for path in glob.glob(str(REPO / root / "**" / "*.py"), recursive=True):
            if os.path.relpath(path, REPO) not in skip:
                reads |= _key_reads(path, sections)
    unread = [k for k in tree_keys() if k not in reads]
    assert not unread, f"keys in vov3d/config/defaults.py that no code reads: {unread}"


def test_tree_and_compat_table_are_disjoint_and_every_key_is_documented():
    keys = tree_keys()
    assert "VERSION" in keys
    assert not [row[0] for row in compat.TABLE if row[0] in keys]  # a tree key always wins over a subtree row
    # every key: a comment on its line or a comment block right above it
    lines = (REPO / "vov3d" / "config" / "defaults.py").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"_C(\.[A-Za-z0-9_]+)+ = (?!CfgNode)", line):
            assert "  # " in line or lines[i - 1].startswith("#"), f"defaults.py:{i + 1} has no comment: {line}"
    # no machine paths or detection weights in what is printed and saved
    dump = get_cfg().dump()
    for word in ("/mnt/", "detectron2", "AVA", "NONLOCAL", "SLOWFAST", "DEFAULT_B"):
        assert word not in dump


# ---------------------------------------------------------------------------- #
# validate(): every bad value is one line naming the key
# ---------------------------------------------------------------------------- #
def _bad_value(rule):
    if rule.one_of is not None:
        default = rule.default
        return [-1] if isinstance(default, list) else (-7 if isinstance(default, int) else "no-such-value")
    if rule.length is not None:
        return list(rule.default) + list(rule.default[:1] or [1])
    op, bound = rule.bounds[0]
    step = 1 if isinstance(rule.default, int) or (isinstance(rule.default, list) and not rule.default) else 0.5
    bad = {"ge": bound - step, "gt": bound, "le": bound + step, "lt": bound}[op]
    return [bad] if isinstance(rule.default, list) else bad


@pytest.mark.parametrize("key", sorted(RULES))
def test_every_bad_value_is_one_line_naming_the_key(key):
    cfg = get_cfg()
    *parents, name = key.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[name] = _bad_value(RULES[key])
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert str(e.value).startswith(key + " ") and "\n" not in str(e.value)


@pytest.mark.parametrize("opts,key", [
    (["DATA.NUM_FRAMES", "0"], "DATA.NUM_FRAMES"),  # was blamed on a video
    (["TEST.NUM_ENSEMBLE_VIEWS", "0"], "TEST.NUM_ENSEMBLE_VIEWS"),  # was blamed on a video
    (["TRAIN.MIXED_PRECISION_DTYPE", "fp16"], "TRAIN.MIXED_PRECISION_DTYPE"),  # amp_dtype used to take it
    (["TRAIN.BATCH_SIZE", "12", "NUM_GPUS", "8"], "TRAIN.BATCH_SIZE"),
    (["SHARD_ID", "2", "NUM_SHARDS", "2"], "SHARD_ID"),
    (["SOLVER.LR_POLICY", "steps_with_relative_lrs", "SOLVER.STEPS", "[0, 10]", "SOLVER.LRS", "[1]"], "SOLVER.LRS"),
    (["SOLVER.LR_POLICY", "steps_with_relative_lrs", "SOLVER.STEPS", "[5, 10]", "SOLVER.LRS", "[1, 0.1]"],
     "SOLVER.STEPS"),
    (["SOLVER.COSINE_END_LR", "0.5"], "SOLVER.COSINE_END_LR"),
    (["VERSION", "2"], "VERSION"),
    (["DATA.NUM_FRAMES", "eight"], "DATA.NUM_FRAMES"),  # type
])
def test_cross_key_and_type_problems_name_the_key(opts, key):
    with pytest.raises(ConfigError, match=re.escape(key)) as e:
        load_config(None, ["NUM_GPUS", "0"] + opts)
    assert "\n" not in str(e.value)


def test_python_api_path_validates(tmp_path):
    from vov3d.engine.evaluate import test
    from vov3d.engine.train import train

    cfg = get_cfg()
    cfg.NUM_GPUS, cfg.OUTPUT_DIR, cfg.DATA.NUM_FRAMES = 0, str(tmp_path), 0
    for run in (train, test):
        with pytest.raises(ConfigError, match="DATA.NUM_FRAMES"):
            run(cfg)


# ---------------------------------------------------------------------------- #
# Loading never runs code; file problems are one line naming file and position
# ---------------------------------------------------------------------------- #
def test_python_configs_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    evil = write(tmp_path, "evil.py", f"open({str(marker)!r}, 'w').write('x')\ncfg = None\n")
    base = write(tmp_path, "base_evil.yaml", "_BASE_: evil.py\nNUM_GPUS: 0\n")
    for path in (evil, base):
        with pytest.raises(ConfigError, match=r"evil\.py: Python config files are not loaded") as e:
            load_config(path)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="Python config"):
        get_cfg().merge_from_file(evil)
    run_net = load_tool("run_net")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert run_net.main(["--cfg", evil]) == 2
    assert err.getvalue().count("\n") == 1 and "evil.py" in err.getvalue()
    assert not marker.exists()


@pytest.mark.parametrize("files,pattern", [
    ({"a.yaml": "_BASE_: a.yaml\n"}, r"a\.yaml: _BASE_ loop: a\.yaml -> a\.yaml"),
    ({"a.yaml": "_BASE_: b.yaml\n", "b.yaml": "_BASE_: a.yaml\n"}, r"_BASE_ loop: a\.yaml -> b\.yaml -> a\.yaml"),
    ({"a.yaml": "TRAIN:\n  BATCH_SIZE: [1, 2\n"}, r"a\.yaml:3:1: YAML error"),
    ({"a.yaml": "TRAIN:\n  BATCH_SIZE: 8\n   ENABLE: true\n"}, r"a\.yaml:3:\d+: YAML error"),
    ({"a.yaml": "- NUM_GPUS\n- 0\n"}, r"a\.yaml: the top level must be a mapping.*list"),
    ({"a.yaml": "just text\n"}, r"a\.yaml: the top level must be a mapping.*str"),
    ({"a.yaml": "!!python/object/apply:os.system ['true']\n"}, r"a\.yaml:1:1: YAML error"),
    ({"a.txt": "NUM_GPUS: 0\n"}, r"a\.txt: not a YAML config"),
    ({"a.yaml": "_BASE_: missing.yaml\n"}, r"Config file not found: .*missing\.yaml"),
    ({"a.yaml": "TRAIN: 5\n"}, r"TRAIN is a section"),
])
def test_file_problems_are_one_line(tmp_path, files, pattern):
    for name, text in files.items():
        write(tmp_path, name, text)
    first = str(tmp_path / next(iter(files)))
    with pytest.raises((ConfigError, FileNotFoundError), match=pattern) as e:
        load_config(first)
    assert "\n" not in str(e.value)


def test_base_is_relative_to_the_including_file_and_empty_yaml_is_fine(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path, "base.yaml", "DATA:\n  NUM_FRAMES: 4\nTRAIN:\n  BATCH_SIZE: 2\n")
    child = write(tmp_path, "sub/child.yaml", "_BASE_: ../base.yaml\nDATA:\n  NUM_FRAMES: 6\n")
    cfg = load_config(child, ["NUM_GPUS", "0"])
    assert cfg.DATA.NUM_FRAMES == 6 and cfg.TRAIN.BATCH_SIZE == 2
    assert load_config(write(tmp_path, "empty.yaml", ""), ["NUM_GPUS", "0"]).DATA.NUM_FRAMES == 8


def test_model_info_with_unregistered_model_is_one_line(tmp_path):
    model_info = load_tool("model_info")
    for opts in (["MODEL.ARCH", "mymodel", "MODEL.MODEL_NAME", "NoSuchNet"], ["DATA.NUM_FRAMES", "0"]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = model_info.main(["--cfg", str(REPO / "configs/SSv1/VoV3D_M_16x1.yaml"), "--no-tree"] + opts)
        assert code == 2 and err.getvalue().count("\n") == 1, err.getvalue()
        assert opts[-1] in err.getvalue()


def test_model_info_clip_size_reaches_the_head(capsys):
    """--crop / --frames build the model for that clip: a Kinetics config (224 crops, a 7x7 head
    pool) counted at 112 pools 4x4 maps instead of failing; the GFLOPs scale with the clip."""
    model_info = load_tool("model_info")
    cfg = str(REPO / "configs/Kinetics/VoV3D_M_16x5.yaml")

    def gflops(*args):
        assert model_info.main(["--cfg", cfg, "--no-tree", *args]) == 0
        line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("GFLOPs:")][0]
        return float(line.split()[1])

    small, full = gflops("--frames", "8", "--crop", "112"), gflops("--frames", "16", "--crop", "224")
    assert 6.5 < full / small < 8.5  # 2x the frames, 4x the area (the head's FLOPs do not scale)


# ---------------------------------------------------------------------------- #
# PySlowFast and official VoV3D files
# ---------------------------------------------------------------------------- #
def test_pyslowfast_only_keys_merge_warn_once_and_are_not_saved(tmp_path, caplog):
    path = write(tmp_path, "psf.yaml", (
        "MODEL:\n  ARCH: x3d\n  MODEL_NAME: X3D\n  FROZEN_BN: True\n"
        "DETECTION:\n  ENABLE: True\n  ALIGNED: False\n"
        "AVA:\n  FRAME_DIR: /somewhere\n"
        "MASK:\n  ENABLE: True\n"
        "MIXUP:\n  ENABLE: False\n  ALPHA: 0.8\n"
        "RESNET:\n  STRIDE_1X1: False\n  ZERO_INIT_FINAL_BN: True\n"
        "TENSORBOARD:\n  ENABLE: True\n  MODEL_VIS:\n    ENABLE: True\n"
        "BN:\n  NUM_SYNC_DEVICES: 4\n"
    ))
    with caplog.at_level(logging.WARNING, logger="vov3d.config.compat"):
        cfg = load_config(path, ["NUM_GPUS", "0", "SOLVER.ZERO_WD_1D_PARAM", "True"])
        load_config(path, ["NUM_GPUS", "0"])
    warned = sorted(r.getMessage().split(" = ")[0] for r in caplog.records)
    assert warned == ["BN.NUM_SYNC_DEVICES", "DETECTION.ENABLE", "MASK.ENABLE", "MODEL.FROZEN_BN",
                      "SOLVER.ZERO_WD_1D_PARAM", "TENSORBOARD.MODEL_VIS.ENABLE"]
    assert cfg.RESNET.ZERO_INIT_FINAL_BN and cfg.TENSORBOARD.ENABLE
    dump = cfg.dump()
    assert "DETECTION" not in dump and "FRAME_DIR" not in dump and "MODEL_VIS" not in dump


def test_official_vov3d_yamls_load_unchanged(caplog):
    """The authors' YAMLs (and ours) load; the only warning is BN.NUM_SYNC_DEVICES, which changes training."""
    files = sorted(glob.glob(str(require_reference("official-configs") / "*.yaml")))
    files += sorted(glob.glob(str(REPO / "configs" / "**" / "*.yaml"), recursive=True))  # ablations/ too
    assert len(files) >= 50
    with caplog.at_level(logging.WARNING, logger="vov3d.config.compat"):
        for path in files:
            cfg = load_config(path, ["NUM_GPUS", "0"])
            assert cfg.MODEL.MODEL_NAME == {"x3d": "X3D", "vov3d": "VoV3D"}.get(cfg.MODEL.ARCH, cfg.MODEL.MODEL_NAME)
    assert {r.getMessage().split(" = ")[0] for r in caplog.records} == {"BN.NUM_SYNC_DEVICES"}


def test_official_checkpoint_stored_cfg_merges_quietly(tmp_path, caplog):
    """Old checkpoints carry PySlowFast's whole tree (AVA paths included); it still loads, silently."""
    from vov3d.utils.checkpoint import read_checkpoint

    stored = read_checkpoint(str(require_reference("vov3d_m.pyth")))["cfg"]
    path = write(tmp_path, "stored.yaml", stored)
    with caplog.at_level(logging.WARNING, logger="vov3d.config.compat"):
        cfg = load_config(path, ["NUM_GPUS", "0", "TRAIN.CHECKPOINT_FILE_PATH", "", "TEST.CHECKPOINT_FILE_PATH", ""])
    assert cfg.VOV3D.INNER_CH == 40 and cfg.MODEL.MODEL_NAME == "VoV3D"
    assert not caplog.records, [r.getMessage() for r in caplog.records]


# Issue 11, defect 4: what PySlowFast's SSv2 SLOWFAST_16x8_R50.yaml does (MODEL.ARCH slowfast, MODEL_NAME left
# to PySlowFast's default, LRS longer than STEPS), in a few lines.
SLOWFAST_LIKE = """\
TRAIN:
  DATASET: ssv2
  BATCH_SIZE: 16
  CHECKPOINT_TYPE: caffe2
DATA:
  NUM_FRAMES: 64
  INPUT_CHANNEL_NUM: [3, 3]
SLOWFAST:
  ALPHA: 4
  FUSION_KERNEL_SZ: 7
RESNET:
  SPATIAL_STRIDES: [[1, 1], [2, 2], [2, 2], [2, 2]]
  NUM_BLOCK_TEMP_KERNEL: [[3, 3], [4, 4], [6, 6], [3, 3]]
NONLOCAL:
  LOCATION: [[[], []], [[], []], [[], []], [[], []]]
SOLVER:
  LR_POLICY: steps_with_relative_lrs
  LRS: [1, 0.1, 0.01, 0.001, 0.0001, 0.00001]
  STEPS: [0, 14, 18]
  MAX_EPOCH: 22
  WEIGHT_DECAY: 1e-6
MODEL:
  NUM_CLASSES: 174
  ARCH: slowfast
"""


def test_a_config_never_builds_another_model(tmp_path):
    path = write(tmp_path, "slowfast.yaml", SLOWFAST_LIKE)
    with pytest.raises(ConfigError, match=r"^MODEL\.ARCH slowfast .*not implemented.*MODEL_NAME VoV3D") as e:
        load_config(path, ["NUM_GPUS", "0"])
    assert "\n" not in str(e.value)
    # the Python API path: merging the file, or a hand-set key reaching build_model
    with pytest.raises(ConfigError, match="MODEL.ARCH slowfast"):
        get_cfg().merge_from_file(path)
    cfg = get_cfg()
    cfg.NUM_GPUS, cfg.MODEL.ARCH = 0, "slowfast"
    with pytest.raises(ConfigError, match="MODEL.ARCH slowfast"):
        build_model(cfg)
    # ARCH and MODEL_NAME of two different vov3d models
    with pytest.raises(ConfigError, match="MODEL.ARCH x3d and MODEL.MODEL_NAME VoV3D name different models"):
        load_config(None, ["NUM_GPUS", "0", "MODEL.ARCH", "x3d"])


def test_lrs_longer_than_steps_is_accepted_as_pyslowfast_does(tmp_path):
    text = SLOWFAST_LIKE.replace("ARCH: slowfast", "ARCH: x3d\n  MODEL_NAME: X3D")
    cfg = load_config(write(tmp_path, "x3d_steps.yaml", text), ["NUM_GPUS", "0"])
    # PySlowFast: the LR of step interval i is LRS[i] * BASE_LR; LRS[3:] are never reached.
    for epoch, mult in ((0, 1), (13.9, 1), (14, 0.1), (18, 0.01), (21.9, 0.01)):
        assert lr_policy.lr_func_steps_with_relative_lrs(cfg, epoch) == pytest.approx(mult * cfg.SOLVER.BASE_LR)
    official = require_reference("official-configs/SSv1_vov3d_finetune_vov3d_M_F32_finetune.yaml")
    cfg = load_config(str(official), ["NUM_GPUS", "0", "TRAIN.CHECKPOINT_FILE_PATH", ""])
    assert len(cfg.SOLVER.LRS) == 6 and len(cfg.SOLVER.STEPS) == 3


@pytest.mark.skipif(not PYSLOWFAST_DIR, reason="set VOV3D_PYSLOWFAST_DIR to a facebookresearch/SlowFast checkout")
def test_pyslowfast_own_configs():
    """Every PySlowFast config merges; X3D ones load and build X3D, all others stop with one line naming
    MODEL.ARCH (or, for PyTorchVideo model names, MODEL.MODEL_NAME) -- never another model."""
    files = sorted(glob.glob(os.path.join(PYSLOWFAST_DIR, "configs", "**", "*.yaml"), recursive=True))
    assert len(files) > 50
    built = []
    for path in files:
        try:
            cfg = load_config(path, ["NUM_GPUS", "0", "TRAIN.CHECKPOINT_FILE_PATH", "",
                                     "TEST.CHECKPOINT_FILE_PATH", ""])
        except ConfigError as e:
            # (one PySlowFast file, ImageNet/MVITv2_B.yaml, is not valid YAML: named with its line and column)
            assert str(e).startswith("MODEL.ARCH ") or re.match(r".*\.yaml:\d+:\d+: YAML error", str(e)), (path, e)
            assert "\n" not in str(e)
            continue
        assert cfg.MODEL.ARCH == "x3d", path
        if cfg.MODEL.MODEL_NAME == "X3D":
            built.append(path)
        else:
            with pytest.raises(KeyError, match="MODEL.MODEL_NAME"):
                build_model(cfg)
    assert len(built) == 4

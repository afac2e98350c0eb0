"""Reading YAML configs and merging them (and KEY VALUE overrides) into a config tree.

Configs are YAML only, parsed with ``yaml.safe_load``: a ``.py`` config (which yacs would execute) is
refused, so a shared or downloaded config can never run code. Every problem is one line naming the file
(and line/column) or the key. Keys that are not in the tree but in the PySlowFast compatibility table
(compat.py) are accepted and dropped. Checking values is load.validate's job.
"""

import ast
import difflib
import os

import yaml
from yacs.config import CfgNode as _YacsCfgNode

from vov3d.config import compat

YAML_SUFFIXES = (".yaml", ".yml")


class ConfigError(ValueError):
    """A config or command-line problem the user must fix; its message (one line) names the key or file."""


# ---------------------------------------------------------------------------- #
# Reading YAML
# ---------------------------------------------------------------------------- #
def read_yaml(path):
    """Returns the mapping at the top of the YAML file `path` (``_BASE_`` left in it)."""
    if os.path.splitext(path)[1].lower() == ".py":
        raise ConfigError(f"{path}: Python config files are not loaded (they would run code); use a YAML file")
    if os.path.splitext(path)[1].lower() not in YAML_SUFFIXES:
        raise ConfigError(f"{path}: not a YAML config (expected a .yaml or .yml file)")
    if not os.path.exists(path):
        raise FileNotFoundError(f"Config file not found: {path}")
    if os.path.isdir(path):
        raise ConfigError(f"{path}: is a directory, not a YAML config")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise ConfigError(f"{where}: YAML error: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: YAML error: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of KEY: value, not a {type(data).__name__}")
    return data


def merge_yaml_file(cfg, path, _chain=()):
    """Merges the YAML file `path` into cfg, its ``_BASE_`` (relative to the file, as in detectron2) first."""
    path = os.fspath(path)
    data = read_yaml(path)
    base = data.pop("_BASE_", None)
    if base is not None:
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{path}: _BASE_ must be the path of another YAML file, got {base!r}")
        base_path = base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base)
        chain = _chain + (os.path.realpath(path),)
        if os.path.realpath(base_path) in chain:
            names = [os.path.basename(p) for p in chain] + [os.path.basename(base_path)]
            raise ConfigError(f"{path}: _BASE_ loop: {' -> '.join(names)}")
        merge_yaml_file(cfg, base_path, chain)
    merge_mapping(cfg, data, f"in {path}")
    return cfg


def merge_mapping(cfg, data, source, prefix=""):
    """Merges a nested mapping {KEY: value or mapping} into cfg; `source` says where it came from."""
    if not prefix and isinstance(data.get("MODEL"), dict) and "ARCH" in data["MODEL"]:
        # An architecture vov3d does not build is what the user must hear about, before any other key.
        model = data["MODEL"]
        refuse_foreign_arch(_decode(model["ARCH"]), model.get("MODEL_NAME", cfg.MODEL.MODEL_NAME), source)
    for name, value in data.items():
        if not isinstance(name, str):
            raise ConfigError(f"config key {prefix}{name!r} is not a name ({source})")
        key = prefix + name
        if isinstance(value, dict) and (compat.row_for(key) is not None or _is_section(cfg, key)):
            merge_mapping(cfg, value, source, key + ".")
        else:
            set_key(cfg, key, value, source)


def merge_opts(cfg, opts, source="on the command line"):
    """Merges ``KEY VALUE`` pairs (values as Python literals, else strings, as yacs reads them) into cfg."""
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs; {opts[-1]!r} has no value ({source})")
    for key, raw in zip(opts[0::2], opts[1::2]):
        set_key(cfg, str(key), raw, source)
    return cfg


# ---------------------------------------------------------------------------- #
# Setting one key
# ---------------------------------------------------------------------------- #
def _decode(value):
    """Returns a string read as a Python literal when it is one ("5e-5", "[1, 2]", "True"), else the value."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return value
    return value


def _is_section(cfg, key):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, _YacsCfgNode) or part not in node:
            return False
        node = node[part]
    return isinstance(node, _YacsCfgNode)


def _all_keys(node, prefix=""):
    for name, value in node.items():
        if isinstance(value, _YacsCfgNode):
            yield from _all_keys(value, prefix + name + ".")
        else:
            yield prefix + name


def _coerce(value, default, key, source):
    if type(value) is type(default):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    expected = {bool: "True or False", int: "an integer", float: "a number", str: "a string",
                list: "a list", tuple: "a list"}.get(type(default), type(default).__name__)
    raise ConfigError(f"{key} {value!r}: expected {expected} ({source})")


def set_key(cfg, key, value, source):
    """Sets the dotted `key` of cfg to `value` (type-checked against the default); a key that is not in
    the tree but in the compat table is dropped (compat.accept); any other is a ConfigError naming it."""
    raw, value = value, _decode(value)
    *parents, name = key.split(".")
    node = cfg
    for part in parents:
        node = node.get(part) if isinstance(node, _YacsCfgNode) else None
    if not isinstance(node, _YacsCfgNode) or name not in node:
        if compat.accept(key, value, source):
            if isinstance(value, dict):  # a whole compat subtree given at once
                merge_mapping(cfg, value, source, key + ".")
            return
        close = difflib.get_close_matches(key, list(_all_keys(cfg)), n=2, cutoff=0.75)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(f"unknown config key {key} ({source}){hint}")
    if isinstance(node[name], _YacsCfgNode):
        raise ConfigError(f"{key} is a section: set its keys ({key}.NAME), not {value!r} ({source})")
    if isinstance(node[name], str) and isinstance(raw, str):
        value = raw  # a string key keeps the text as written ("1", "None" stay strings)
    if key in _OPTIONAL_NUMBERS:
        node[name] = _coerce_optional_number(value, key, source)
        return
    node[name] = _coerce(value, node[name], key, source)


_OPTIONAL_NUMBERS = set()  # keys declared Key(None, optional=True): None (off) or a number


def declare_optional_numbers(keys):
    """Makes set_key accept None or a number for each of `keys` (called by defaults.py); returns None."""
    _OPTIONAL_NUMBERS.update(keys)


def _coerce_optional_number(value, key, source):
    """Returns None or `value` as a float (a Key(..., optional=True): None means off)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"{key} {value!r}: expected a number or None ({source})")


def refuse_foreign_arch(arch, model_name, source=""):
    """Raises ConfigError when `arch` is one of PySlowFast's architectures that vov3d does not build."""
    if isinstance(arch, str) and arch in compat.PYSLOWFAST_ARCHS:
        where = f" ({source})" if source else ""
        raise ConfigError(
            f"MODEL.ARCH {arch} ({compat.PYSLOWFAST_ARCHS[arch]}) is not implemented in vov3d "
            f"(MODEL.MODEL_NAME {model_name}){where}; vov3d's models: MODEL.ARCH in vov3d/config/defaults.py"
        )

"""The building blocks of the config tree: ``Key`` (a default with the values it accepts) and ``CfgNode``
(a yacs node whose merges go through vov3d's YAML-only merge, vov3d/config/merge.py)."""

from yacs.config import CfgNode as _YacsCfgNode

from vov3d.config.merge import merge_opts, merge_yaml_file


class Key:
    """A default value with the values its key accepts (replaced by the bare default when the tree is built)."""

    def __init__(self, default, one_of=None, ge=None, gt=None, le=None, lt=None, length=None, optional=False):
        # optional: None (off) or a number, as PySlowFast's SOLVER.CLIP_GRAD_* keys (default None).
        self.default, self.one_of, self.length, self.optional = default, one_of, length, optional
        self.bounds = [(op, x) for op, x in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if x is not None]

    def problem(self, value):
        """Returns why `value` is not accepted, or None when it is."""
        if self.optional and value is None:
            return None
        if self.one_of is not None and value not in self.one_of:
            return "choose one of " + ", ".join(str(x) for x in self.one_of)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if self.length is not None and len(items) != self.length:
            return f"needs {self.length} values"
        for op, bound in self.bounds:
            tests = {"ge": lambda v: v >= bound, "gt": lambda v: v > bound,
                     "le": lambda v: v <= bound, "lt": lambda v: v < bound}
            if not all(tests[op](v) for v in items):
                return "must be " + {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[op] + f" {bound}"
        return None


class CfgNode(_YacsCfgNode):
    """A yacs node whose file and command-line merges go through vov3d's loader (YAML only, one-line
    errors naming the key, PySlowFast-only keys accepted and dropped)."""

    def merge_from_file(self, cfg_filename):
        merge_yaml_file(self, cfg_filename)

    def merge_from_list(self, cfg_list):
        merge_opts(self, cfg_list)

    def __setattr__(self, name, value):
        if isinstance(value, Key):  # defaults.py only: a default with its allowed values
            self[name] = value
            return
        super().__setattr__(name, value)

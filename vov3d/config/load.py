"""The one config loader: defaults <- YAML files (``_BASE_`` first) <- ``KEY VALUE`` overrides, then
``validate``. Every tool and the Python API go through here.

Reading and merging (YAML only, one-line errors, PySlowFast-only keys dropped) is merge.py; the
allowed values of each key are the ``Key(...)`` next to it in defaults.py.
"""

from vov3d.config.defaults import ARCH_MODELS, CONFIG_VERSION, RULES, get_cfg
from vov3d.config.paths import find_config
from vov3d.config.merge import (  # noqa: F401 (ConfigError, merge_yaml_file, merge_opts: the loader's API)
    ConfigError, merge_opts, merge_yaml_file, refuse_foreign_arch, set_key,
)


# ---------------------------------------------------------------------------- #
# Validation
# ---------------------------------------------------------------------------- #
def _value(cfg, key):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _check_rules(cfg):
    if cfg.VERSION != CONFIG_VERSION:
        raise ConfigError(f"VERSION {cfg.VERSION}: this vov3d reads configs of VERSION {CONFIG_VERSION}")
    for key, rule in RULES.items():
        value = _value(cfg, key)
        try:
            problem = rule.problem(value)
        except TypeError:
            problem = "values of the wrong type"
        if problem:
            raise ConfigError(f"{key} {value!r}: {problem}")


def check_model_choice(cfg):
    """Raises ConfigError unless MODEL.ARCH and MODEL.MODEL_NAME name the same model vov3d can build (a
    PySlowFast config of another architecture must not silently train vov3d's default model)."""
    arch, name = cfg.MODEL.ARCH, cfg.MODEL.MODEL_NAME
    refuse_foreign_arch(arch, name)
    arch_of_name = {model: a for a, model in ARCH_MODELS.items()}.get(name)
    if arch and arch_of_name is not None and arch != arch_of_name:
        raise ConfigError(
            f"MODEL.ARCH {arch} and MODEL.MODEL_NAME {name} name different models "
            f"(MODEL_NAME {name} is MODEL.ARCH {arch_of_name}): set both"
        )


def _check_run(cfg):
    if cfg.SHARD_ID >= cfg.NUM_SHARDS:
        raise ConfigError(f"SHARD_ID {cfg.SHARD_ID} must be below NUM_SHARDS {cfg.NUM_SHARDS}")
    # NUM_SHARDS machines x (one process per GPU, or one CPU process): utils.distributed.expected_world_size.
    world = cfg.NUM_SHARDS * max(cfg.NUM_GPUS, 1)
    procs = f"NUM_SHARDS {cfg.NUM_SHARDS} x " + (f"NUM_GPUS {cfg.NUM_GPUS}" if cfg.NUM_GPUS > 0 else "1 CPU process")
    for key, size, enabled in (("TRAIN.BATCH_SIZE", cfg.TRAIN.BATCH_SIZE, cfg.TRAIN.ENABLE),
                               ("TEST.BATCH_SIZE", cfg.TEST.BATCH_SIZE, cfg.TEST.ENABLE)):
        if enabled and size % world:
            raise ConfigError(f"{key} {size} does not divide by the {world} processes ({procs}): "
                              f"set {key} to a multiple of {world}")


def _check_solver(cfg):
    s = cfg.SOLVER
    if s.LR_POLICY == "steps_with_relative_lrs":
        steps, lrs = list(s.STEPS), list(s.LRS)
        if not steps or steps[0] != 0 or any(b <= a for a, b in zip(steps, steps[1:])):
            raise ConfigError(f"SOLVER.STEPS {steps}: steps_with_relative_lrs needs increasing epochs starting at 0")
        # PySlowFast reads LRS[i] for the i-th step only, so a longer LRS is fine (its tail is never used).
        if len(lrs) < len(steps):
            raise ConfigError(f"SOLVER.LRS {lrs}: needs a learning-rate multiple for each of the "
                              f"{len(steps)} SOLVER.STEPS")
    if cfg.MIXUP.ENABLE and s.LABEL_SMOOTHING > 0:
        raise ConfigError(f"SOLVER.LABEL_SMOOTHING {s.LABEL_SMOOTHING} with MIXUP.ENABLE: the mixed targets are "
                          "smoothed by MIXUP.LABEL_SMOOTH_VALUE; set SOLVER.LABEL_SMOOTHING 0")
    if cfg.MIXUP.ENABLE and cfg.MODEL.LOSS_FUNC not in ("cross_entropy", "soft_cross_entropy"):
        raise ConfigError(f"MODEL.LOSS_FUNC {cfg.MODEL.LOSS_FUNC} with MIXUP.ENABLE: mixed soft targets need "
                          "cross_entropy or soft_cross_entropy")
    if cfg.MULTIGRID.LONG_CYCLE and s.LR_POLICY != "steps_with_relative_lrs":
        raise ConfigError(f"MULTIGRID.LONG_CYCLE needs SOLVER.LR_POLICY steps_with_relative_lrs (its schedule sets "
                          f"SOLVER.STEPS / LRS, as in PySlowFast), not {s.LR_POLICY}")
    if s.LR_POLICY == "cosine" and s.COSINE_END_LR > s.BASE_LR:
        raise ConfigError(f"SOLVER.COSINE_END_LR {s.COSINE_END_LR} must not exceed SOLVER.BASE_LR {s.BASE_LR}")


def validate(cfg):
    """Raises ConfigError (one line naming the key) for the first value vov3d cannot use; returns cfg."""
    check_model_choice(cfg)
    _check_rules(cfg)
    _check_run(cfg)
    _check_solver(cfg)
    return cfg


def load_config(cfg_file=None, opts=(), overrides=None, before_validate=None):
    """Returns the validated config: defaults <- `cfg_file` (YAML) <- `opts` (KEY VALUE list) <- `overrides`
    ({KEY: value}, set by the calling tool); `before_validate(cfg)` may adjust it (launch environment).
    A `cfg_file` that does not exist is looked up among the shipped configs (config.paths.find_config)."""
    cfg = get_cfg()
    if cfg_file:
        merge_yaml_file(cfg, find_config(cfg_file))
    merge_opts(cfg, opts)
    for key, value in (overrides or {}).items():
        set_key(cfg, key, value, "set by the tool")
    if before_validate is not None:
        before_validate(cfg)
    return validate(cfg)

"""Logging: console + OUTPUT_DIR/stdout.log on the master process, PySlowFast-style json_stats lines."""

import decimal
import json
import logging
import os
import sys

from vov3d.utils import distributed as du

_FORMAT = "[%(asctime)s][%(levelname)s] %(name)s:%(lineno)d: %(message)s"
_HANDLER_TAG = "_vov3d_handler"


def setup_logging(output_dir=None, level=logging.INFO):
    """Configures the root logger: master logs INFO to stdout and `output_dir`/stdout.log (appended,
    so a resumed run continues the same file); other ranks log warnings and errors only."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_TAG, False):
            root.removeHandler(h)
            h.close()
    rank = du.get_rank()
    master = rank == 0
    fmt = _FORMAT if master else f"[rank {rank}]" + _FORMAT
    formatter = logging.Formatter(fmt, datefmt="%m/%d %H:%M:%S")
    root.setLevel(level)
    console = logging.StreamHandler(stream=sys.stdout)
    console.setLevel(level if master else logging.WARNING)
    console.setFormatter(formatter)
    setattr(console, _HANDLER_TAG, True)
    root.addHandler(console)
    if master and output_dir:
        os.makedirs(output_dir, exist_ok=True)
        fh = logging.FileHandler(os.path.join(output_dir, "stdout.log"), mode="a")
        fh.setLevel(level)
        fh.setFormatter(formatter)
        setattr(fh, _HANDLER_TAG, True)
        root.addHandler(fh)
    for noisy in ("matplotlib", "PIL", "fvcore.common.checkpoint", "iopath"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name):
    """Returns the logger called `name`."""
    return logging.getLogger(name)


def _round(v):
    if isinstance(v, float):
        return float(decimal.Decimal(f"{v:.6g}"))
    return v


def format_json_stats(stats):
    """Returns the "json_stats: {...}" line for a dict of stats (floats to 6 significant digits)."""
    stats = {k: _round(v) for k, v in stats.items()}
    return "json_stats: " + json.dumps(stats, sort_keys=True)


def log_json_stats(stats, output_dir=None):
    """Logs a json_stats line; on the master also appends the stats to `output_dir`/metrics.jsonl."""
    logging.getLogger("vov3d.stats").info(format_json_stats(stats))
    if output_dir and du.is_master_proc():
        with open(os.path.join(output_dir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({k: _round(v) for k, v in stats.items()}, sort_keys=True) + "\n")


def read_json_stats(output_dir):
    """Returns the list of stats dicts appended to `output_dir`/metrics.jsonl (empty when absent)."""
    path = os.path.join(output_dir, "metrics.jsonl")
    out = []
    if not os.path.isfile(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill
                    pass
    return out

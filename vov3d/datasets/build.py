"""Dataset registry: TRAIN.DATASET / TEST.DATASET -> dataset class taking (cfg, split)."""

from fvcore.common.registry import Registry

DATASET_REGISTRY = Registry("DATASET")
DATASET_REGISTRY.__doc__ = """Registry of video datasets: a name -> class constructed as cls(cfg, split).

Lookup is case-insensitive ("ssv1", "Ssv1" and "SSV1" are the same dataset)."""


def get_dataset_class(name):
    """Returns the registered dataset class whose name equals `name` ignoring case."""
    wanted = name.lower()
    for key, cls in DATASET_REGISTRY:
        if key.lower() == wanted:
            return cls
    known = ", ".join(sorted(k.lower() for k, _ in DATASET_REGISTRY))
    raise KeyError(f"dataset {name!r} (TRAIN.DATASET / TEST.DATASET) is not registered; known: {known}")


def build_dataset(name, cfg, split):
    """Returns the dataset registered as `name` for split train | val | test."""
    return get_dataset_class(name)(cfg, split)

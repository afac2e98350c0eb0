"""Training and testing engine: `train(cfg)`, `test(cfg)`, meters and process launching."""


def train(cfg):
    """Trains the configured model (see vov3d.engine.train.train)."""
    from vov3d.engine.train import train as _train

    return _train(cfg)


def test(cfg):
    """Runs the multi-view test (see vov3d.engine.evaluate.test)."""
    from vov3d.engine.evaluate import test as _test

    return _test(cfg)

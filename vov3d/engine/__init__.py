"""Training and testing engine: `vov3d.engine.train.train(cfg)`, `vov3d.engine.evaluate.test(cfg)`,
meters, EMA and process launching (`vov3d.engine.launch`)."""

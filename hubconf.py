"""torch.hub entry points: one per published weights name (`vov3d-weights list`), plus the short names
vov3d_m, vov3d_l, x3d_m, x3d_l (Kinetics-400, official VoV3D release).

    model = torch.hub.load("path/to/vov3d", "vov3d_m", source="local", pretrained=True)

Each takes pretrained (download once, verify, load), num_classes (another count re-initialises the
classifier) and opts (config KEY VALUE list). See vov3d/utils/pretrained.py.
"""

dependencies = ["torch", "torchvision", "yacs", "fvcore", "av"]


def _entry(name):
    def entry(pretrained=False, num_classes=None, opts=()):
        from vov3d.utils.pretrained import pretrained_model

        return pretrained_model(name, pretrained=pretrained, num_classes=num_classes, opts=opts)

    entry.__name__ = name
    entry.__doc__ = f"Returns the model of the `{name}` weights (loaded with them when pretrained=True)."
    return entry


def _names():
    from vov3d.utils.pretrained import ALIASES
    from vov3d.utils.weights import KNOWN_WEIGHTS

    return [*ALIASES, *KNOWN_WEIGHTS]


for _name in _names():
    globals()[_name] = _entry(_name)
del _name

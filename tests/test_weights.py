"""Weights by name or URL (vov3d/utils/weights.py), safetensors export, torch.hub entry points, and
PyTorchVideo X3D weights. No test touches the network: a local HTTP server (and file:// URLs) serve
the files through the same download code."""

import functools
import http.server
import os
import threading

import pytest
import torch
import torch.nn as nn

from conftest import REPO
from vov3d.config.load import ConfigError
from vov3d.utils import checkpoint as cu
from vov3d.utils import weights as wts


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests = []

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Returns (folder served, base URL, list of paths requested) of an HTTP server on localhost."""
    folder = tmp_path_factory.mktemp("served")
    requests = []
    handler = type("Handler", (_CountingHandler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def vov3d_m():
    """Returns (a VoV3D-M built through the torch.hub entry point without weights, its state_dict)."""
    torch.manual_seed(0)
    model = torch.hub.load(str(REPO), "vov3d_m", source="local", pretrained=False, trust_repo=True)
    return model, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VOV3D_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _register(monkeypatch, name, url, sha256=""):
    old = wts.KNOWN_WEIGHTS[name]
    monkeypatch.setitem(wts.KNOWN_WEIGHTS, name, old._replace(url=url, sha256=sha256))


def test_hub_entry_point_fetches_registered_weights_once_verified_and_cached(server, vov3d_m, cache, monkeypatch):
    folder, base, requests = server
    model, state = vov3d_m
    torch.save({"model_state": state, "epoch": 3}, folder / "vov3d_M_k400_weight.pth")
    digest = cu.file_sha256(folder / "vov3d_M_k400_weight.pth")
    _register(monkeypatch, "vov3d_m_k400", f"{base}/vov3d_M_k400_weight.pth", digest)
    before = len(requests)

    loaded = torch.hub.load(str(REPO), "vov3d_m", source="local", pretrained=True, trust_repo=True).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    again = wts.resolve_checkpoint("vov3d_m_k400")
    assert len(requests) - before == 1  # downloaded once, then read from the cache
    assert os.path.dirname(again) == str(cache / "checkpoints")
    assert cu.verify_checkpoint(again) is True  # its checksum file holds the published digest

    with open(again, "r+b") as f:  # damage the cached copy: every later read refuses it
        f.seek(1000)
        f.write(b"\0" * 64)
    with pytest.raises(cu.CheckpointCorrupt, match="checksum"):
        cu.load_checkpoint("vov3d_m_k400", model)


def test_download_refuses_a_file_that_does_not_match_the_published_digest(server, cache):
    folder, base, _ = server
    (folder / "w.pth").write_bytes(b"not the published file")
    with pytest.raises(cu.CheckpointCorrupt, match="does not match the published"):
        wts.download(f"{base}/w.pth", "deadbeef")
    assert [n for n in os.listdir(cache / "checkpoints") if not n.endswith(".lock")] == []  # nothing kept


def test_unpublished_digest_is_recorded_at_first_download_and_checked_after(tmp_path, cache):
    src = tmp_path / "x3d.pyth"
    torch.save({"model_state": {"w": torch.arange(4.0)}}, src)
    url = src.as_uri()  # file:// goes through the same download code
    path = wts.download(url)
    assert cu.verify_checkpoint(path) is True and wts.download(url) == path
    src.write_bytes(b"changed upstream")  # the cache keeps the first copy
    assert torch.equal(cu.read_checkpoint(url)["model_state"]["w"], torch.arange(4.0))
    os.remove(path + cu.CHECKSUM_SUFFIX)  # killed between the file's rename and its checksum's: re-hashed, not fetched
    assert wts.download(url) == path and cu.verify_checkpoint(path) is True
    assert torch.equal(cu.read_checkpoint(url)["model_state"]["w"], torch.arange(4.0))
    with pytest.raises(FileNotFoundError, match="cannot download"):
        wts.download((tmp_path / "missing.pyth").as_uri())
    with pytest.raises(FileNotFoundError, match="weights name"):
        wts.resolve_checkpoint("no_such_weights")


def test_checkpoint_keys_accept_urls_and_weights_names():
    from vov3d.config import load_config
    from vov3d.utils.parser import check_checkpoint_paths

    for value in ("https://example.org/w.pyth", "file:///tmp/w.pyth", "vov3d_l_k400"):
        check_checkpoint_paths(load_config(None, ["TRAIN.CHECKPOINT_FILE_PATH", value, "NUM_GPUS", 0]))
    with pytest.raises(ConfigError, match="TEST.CHECKPOINT_FILE_PATH vov3d_xl does not exist"):
        check_checkpoint_paths(load_config(None, ["TEST.CHECKPOINT_FILE_PATH", "vov3d_xl", "NUM_GPUS", 0]))


def test_registry_entries_name_shipped_configs_that_load():
    from vov3d.config import find_config, load_config

    assert len({wts.cached_path(w.url) for w in wts.KNOWN_WEIGHTS.values()}) == len(wts.KNOWN_WEIGHTS)
    for w in wts.KNOWN_WEIGHTS.values():
        assert wts.is_url(w.url)
        load_config(find_config("configs/" + w.config), [*w.opts, "NUM_GPUS", 0])


def test_safetensors_export_round_trip(tmp_path, capsys):
    pytest.importorskip("safetensors")  # a dependency of the package (pyproject.toml); older venvs may lack it
    from vov3d.cli.weights import main

    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.Flatten(), nn.Linear(4, 2))
    src = cu.atomic_torch_save({"model_state": model.state_dict(), "epoch": 1, "cfg": "MODEL:\n  NUM_CLASSES: 2\n"},
                               str(tmp_path / "run.pyth"))
    out = str(tmp_path / "run.safetensors")
    assert main(["export", src, out]) == 0
    ckpt = cu.read_checkpoint(out)
    assert cu.verify_checkpoint(out) is True and ckpt["cfg"].startswith("MODEL:")
    assert sorted(ckpt["model_state"]) == sorted(model.state_dict())
    fresh = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.Flatten(), nn.Linear(4, 2))
    cu.load_checkpoint(out, fresh)
    loaded = fresh.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


def _pytorchvideo_x3d_m():
    """Returns PyTorchVideo's X3D-M (4 frames, 64 px) with BN statistics that are not the identity."""
    create_x3d = pytest.importorskip("pytorchvideo.models.x3d").create_x3d
    torch.manual_seed(0)
    ptv = create_x3d(input_clip_length=4, input_crop_size=64, depth_factor=2.2).eval()
    for m in ptv.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return ptv


def test_pytorchvideo_x3d_state_dict_loads_with_equal_outputs(tmp_path):
    from vov3d.config import load_config
    from vov3d.models import build_model

    ptv = _pytorchvideo_x3d_m()
    small = ["NUM_GPUS", 0, "DATA.NUM_FRAMES", 4, "DATA.TRAIN_CROP_SIZE", 64, "DATA.TEST_CROP_SIZE", 64]
    path = str(tmp_path / "X3D_M.pyth")
    torch.save({"model_state": ptv.state_dict()}, path)  # as PyTorchVideo's hub files hold it
    with pytest.raises(ValueError, match="X3D.STRIDED_SHORTCUT_BN False"):
        cu.load_checkpoint(path, build_model(load_config("configs/Kinetics/X3D_M_16x5.yaml", small)))
    ours = build_model(load_config("configs/Kinetics/X3D_M_16x5.yaml", small + ["X3D.STRIDED_SHORTCUT_BN", False]))
    cu.load_checkpoint(path, ours)
    ours.eval()
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        theirs, mine = ptv(x), ours([x])
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ptv.parameters())
    torch.testing.assert_close(mine.log(), theirs.log(), rtol=0, atol=1e-4)  # both heads end in softmax

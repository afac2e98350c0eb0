"""Weights by name or URL: the registry of published checkpoints, and a download cache that verifies.

``TRAIN.CHECKPOINT_FILE_PATH`` / ``TEST.CHECKPOINT_FILE_PATH`` (and every reader of checkpoints) take a
local path, an ``http(s)://`` or ``file://`` URL, or a name of ``KNOWN_WEIGHTS`` (``vov3d-weights list``).
A URL is downloaded once into ``cache_dir()`` (``$VOV3D_CACHE``, default ``~/.cache/vov3d``) and kept.

Verification: where the publisher gives a SHA-256 (torchvision puts its first 8 hex digits in the file
name), a download that does not match is refused and nothing is kept. Where none is published (the
VoV3D, PySlowFast and PyTorchVideo releases), the digest of the first download is recorded in the
file's checksum file, and every later read checks the cached file against it (as for run checkpoints:
vov3d.utils.files). Downloads are atomic and locked, so parallel processes fetch a file once.
"""

import collections
import hashlib
import logging
import os
import urllib.error
import urllib.parse
import urllib.request

from vov3d.utils.files import CheckpointCorrupt, HashingWriter, file_sha256, stored_checksum, write_atomically, write_checksum

try:
    import fcntl
except ImportError:  # not on Windows: parallel first downloads there each fetch the file
    fcntl = None

logger = logging.getLogger(__name__)

URL_SCHEMES = ("http://", "https://", "file://")

Weights = collections.namedtuple("Weights", "name url sha256 config opts source")
Weights.__doc__ = """A published checkpoint: `sha256` is the full digest, a prefix of it, or "" (not published);
`config` (under configs/) plus `opts` (KEY VALUE overrides) build the model it fits."""

_VOV3D = "https://dl.dropbox.com/s/"  # the official VoV3D README's links (youngwanLEE/VoV3D)
_PYSLOWFAST = "https://dl.fbaipublicfiles.com/pyslowfast/x3d_models/"  # PySlowFast MODEL_ZOO.md
_PYTORCHVIDEO = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/"  # pytorchvideo hub/x3d.py
_TORCHVISION = "https://download.pytorch.org/models/"  # torchvision.models.video *_Weights.KINETICS400_V1
# X3D-XS and -S are X3D-M's network on shorter clips and smaller crops (PySlowFast's X3D_XS / X3D_S.yaml).
_X3D_XS = ("DATA.NUM_FRAMES", 4, "DATA.SAMPLING_RATE", 12, "DATA.TRAIN_CROP_SIZE", 160, "DATA.TEST_CROP_SIZE", 182,
           "DATA.TRAIN_JITTER_SCALES", [182, 228])
_X3D_S = ("DATA.NUM_FRAMES", 13, "DATA.SAMPLING_RATE", 6, "DATA.TRAIN_CROP_SIZE", 160, "DATA.TEST_CROP_SIZE", 182,
          "DATA.TRAIN_JITTER_SCALES", [182, 228])
_PTV = ("X3D.STRIDED_SHORTCUT_BN", False)

KNOWN_WEIGHTS = {w.name: w for w in (
    # Official VoV3D release (the README's tables; Something-Something from scratch unless "k400ft").
    Weights("x3d_m_ssv1", _VOV3D + "lb9uvj4tl19xzmn/x3d_M_ssv1.pth", "", "SSv1/X3D_M_16x1.yaml", (), "VoV3D release"),
    Weights("vov3d_m_f16_ssv1", _VOV3D + "usbcudmhpknqvtd/vov3d_M_f16_ssv1.pth", "", "SSv1/VoV3D_M_16x1.yaml", (),
            "VoV3D release"),
    Weights("vov3d_m_f32_ssv1", _VOV3D + "fvet69zyeswe25v/vov3d_M_f32_ssv1.pth", "", "SSv1/VoV3D_M_32x1.yaml", (),
            "VoV3D release"),
    Weights("vov3d_m_f32_k400ft_ssv1", _VOV3D + "7qzdrv7p2l12mor/vov3d_M_f32_finetune_ssv1.pth", "",
            "SSv1/VoV3D_M_32x1_K400_finetune.yaml", (), "VoV3D release"),
    Weights("x3d_l_ssv1", _VOV3D + "yixwwfv6mv2bpnd/x3d_L_ssv1.pth", "", "SSv1/X3D_L_16x1.yaml", (), "VoV3D release"),
    Weights("vov3d_l_f16_ssv1", _VOV3D + "bdjam5tyaedkczl/vov3d_L_f16_ssv1.pth", "", "SSv1/VoV3D_L_16x1.yaml", (),
            "VoV3D release"),
    Weights("vov3d_l_f32_ssv1", _VOV3D + "g6lc5sj8h7f2r5v/vov3d_L_f32_ssv1.pth", "", "SSv1/VoV3D_L_32x1.yaml", (),
            "VoV3D release"),
    Weights("vov3d_l_f32_k400ft_ssv1", _VOV3D + "4q2fupr3gcht1ik/vov3d_L_f32_finetune_ssv1.pth", "",
            "SSv1/VoV3D_L_32x1_K400_finetune.yaml", (), "VoV3D release"),
    Weights("x3d_m_ssv2", _VOV3D + "b6gjywzrn85sa89/x3d_M_ssv2.pth", "", "SSv2/X3D_M_16x1.yaml", (), "VoV3D release"),
    Weights("vov3d_m_f16_ssv2", _VOV3D + "hz34ltdl6iukdxc/vov3d_M_f16_ssv2.pth", "", "SSv2/VoV3D_M_16x1.yaml", (),
            "VoV3D release"),
    Weights("vov3d_m_f32_ssv2", _VOV3D + "z6qtyjgf0v13jnq/vov3d_M_f32_ssv2.pth", "", "SSv2/VoV3D_M_32x1.yaml", (),
            "VoV3D release"),
    Weights("vov3d_m_f32_k400ft_ssv2", _VOV3D + "dpkbx6wjkay7ret/vov3d_M_f32_finetune_ssv2.pth", "",
            "SSv2/VoV3D_M_32x1_K400_finetune.yaml", (), "VoV3D release"),
    Weights("x3d_l_ssv2", _VOV3D + "iaqwbejrkbd7372/x3d_L_ssv2.pth", "", "SSv2/X3D_L_16x1.yaml", (), "VoV3D release"),
    Weights("vov3d_l_f16_ssv2", _VOV3D + "678efl8zyrmq7ch/vov3d_L_f16_ssv2.pth", "", "SSv2/VoV3D_L_16x1.yaml", (),
            "VoV3D release"),
    Weights("vov3d_l_f32_ssv2", _VOV3D + "f4330e5htdiwqa5/vov3d_L_f32_ssv2.pth", "", "SSv2/VoV3D_L_32x1.yaml", (),
            "VoV3D release"),
    Weights("vov3d_l_f32_k400ft_ssv2", _VOV3D + "sly5orjsi2zl84a/vov3d_L_f32_finetune_ssv2.pth", "",
            "SSv2/VoV3D_L_32x1_K400_finetune.yaml", (), "VoV3D release"),
    Weights("x3d_m_k400", _VOV3D + "s87lnn7ch4a6e47/x3d_M_256e_k400.pth", "", "Kinetics/X3D_M_16x5.yaml", (),
            "VoV3D release (X3D-M, 256 epochs)"),
    Weights("vov3d_m_k400", _VOV3D + "8qbewp3teb51jfb/vov3d_M_k400_weight.pth", "", "Kinetics/VoV3D_M_16x5.yaml", (),
            "VoV3D release"),
    Weights("x3d_l_k400", _VOV3D + "jhw5439tyvmtjzp/x3d_L_256e_256scale_k400.pth", "", "Kinetics/X3D_L_16x5.yaml", (),
            "VoV3D release (X3D-L, 256 epochs, 256 scale)"),
    Weights("vov3d_l_k400", _VOV3D + "ah2azwbocxro9qa/vov3d_L_k400_weight.pth", "", "Kinetics/VoV3D_L_16x5.yaml", (),
            "VoV3D release"),
    # PySlowFast's X3D (Kinetics-400).
    Weights("pyslowfast_x3d_xs", _PYSLOWFAST + "x3d_xs.pyth", "", "Kinetics/X3D_M_16x5.yaml", _X3D_XS, "PySlowFast"),
    Weights("pyslowfast_x3d_s", _PYSLOWFAST + "x3d_s.pyth", "", "Kinetics/X3D_M_16x5.yaml", _X3D_S, "PySlowFast"),
    Weights("pyslowfast_x3d_m", _PYSLOWFAST + "x3d_m.pyth", "", "Kinetics/X3D_M_16x5.yaml", (), "PySlowFast"),
    Weights("pyslowfast_x3d_l", _PYSLOWFAST + "x3d_l.pyth", "", "Kinetics/X3D_L_16x5_x3dpaper.yaml", (), "PySlowFast"),
    # PyTorchVideo's X3D (Kinetics-400): its own names and no BN on res2's strided shortcut.
    Weights("pytorchvideo_x3d_xs", _PYTORCHVIDEO + "X3D_XS.pyth", "", "Kinetics/X3D_M_16x5.yaml", _X3D_XS + _PTV,
            "PyTorchVideo"),
    Weights("pytorchvideo_x3d_s", _PYTORCHVIDEO + "X3D_S.pyth", "", "Kinetics/X3D_M_16x5.yaml", _X3D_S + _PTV,
            "PyTorchVideo"),
    Weights("pytorchvideo_x3d_m", _PYTORCHVIDEO + "X3D_M.pyth", "", "Kinetics/X3D_M_16x5.yaml",
            ("DATA.TEST_CROP_SIZE", 224) + _PTV, "PyTorchVideo"),
    Weights("pytorchvideo_x3d_l", _PYTORCHVIDEO + "X3D_L.pyth", "", "Kinetics/X3D_L_16x5_x3dpaper.yaml", _PTV,
            "PyTorchVideo"),
    # torchvision's video models (Kinetics-400); the hex digits in each name begin the file's SHA-256.
    Weights("torchvision_r2plus1d_18", _TORCHVISION + "r2plus1d_18-91a641e6.pth", "91a641e6",
            "Kinetics/R2plus1D_18_16x1_torchvision.yaml", (), "torchvision"),
    Weights("torchvision_r3d_18", _TORCHVISION + "r3d_18-b3b3357e.pth", "b3b3357e", "Kinetics/R2plus1D_18_8x1.yaml",
            ("RESNET3D.ARCH", "r3d", "DATA.NUM_FRAMES", 16), "torchvision"),
    Weights("torchvision_mc3_18", _TORCHVISION + "mc3_18-a90a0ba3.pth", "a90a0ba3", "Kinetics/R2plus1D_18_8x1.yaml",
            ("RESNET3D.ARCH", "mc3", "DATA.NUM_FRAMES", 16), "torchvision"),
    Weights("torchvision_s3d", _TORCHVISION + "s3d-d76dad2f.pth", "d76dad2f", "Kinetics/S3D_64x1.yaml", (),
            "torchvision"),
)}


def is_url(spec):
    """Returns True when `spec` is a URL vov3d downloads (http, https, file)."""
    return isinstance(spec, str) and spec.lower().startswith(URL_SCHEMES)


def cache_dir():
    """Returns the folder downloaded weights are kept in: $VOV3D_CACHE, else ~/.cache/vov3d."""
    default = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vov3d")
    return os.path.join(os.environ.get("VOV3D_CACHE") or default, "checkpoints")


def cached_path(url):
    """Returns where `url` is kept in the cache: its file name plus a digest of the whole URL (two
    releases may share a file name)."""
    name = os.path.basename(urllib.parse.urlparse(url).path) or "download"
    stem, ext = os.path.splitext(name)
    return os.path.join(cache_dir(), f"{stem}-{hashlib.sha256(url.encode()).hexdigest()[:8]}{ext}")


def lookup(name):
    """Returns the KNOWN_WEIGHTS entry `name`; KeyError naming the known ones otherwise."""
    try:
        return KNOWN_WEIGHTS[name]
    except KeyError:
        raise KeyError(f"no weights named {name!r}; known: {', '.join(sorted(KNOWN_WEIGHTS))}") from None


def resolve_checkpoint(spec):
    """Returns a local file for a checkpoint path, URL or KNOWN_WEIGHTS name (downloading it once)."""
    if not spec or os.path.exists(spec):
        return spec
    if is_url(spec):
        return download(spec)
    if spec in KNOWN_WEIGHTS:
        w = KNOWN_WEIGHTS[spec]
        return download(w.url, w.sha256)
    raise FileNotFoundError(f"Checkpoint not found: {spec} (neither a file, an http(s):// or file:// URL, nor a "
                            "weights name: see `vov3d-weights list`)")


def _check_digest(url, digest, sha256):
    if sha256 and not digest.startswith(sha256.lower()):
        raise CheckpointCorrupt(f"{url}: SHA-256 {digest} does not match the published {sha256}: download refused")


def download(url, sha256="", progress=True):
    """Returns the cached copy of `url`, downloading it first if needed; checks it against `sha256` (a
    full digest or a prefix; "" when none is published: the first download's digest is recorded)."""
    path = cached_path(url)

    def cached():
        return os.path.isfile(path) and os.path.isfile(path + ".sha256")

    if not cached():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".lock", "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one process downloads, the others then find the file
            if not cached():
                _fetch(url, path, sha256, progress)
    recorded = stored_checksum(path)
    if not recorded:
        raise CheckpointCorrupt(f"{path + '.sha256'} (cached from {url}) is empty: delete it and {path} to "
                                "download again")
    _check_digest(url, recorded, sha256)  # a checksum file written before the registry knew the digest
    return path


def _fetch(url, path, sha256, progress):
    """Downloads `url` to `path` atomically, then writes its checksum file."""
    if os.path.isfile(path):  # complete (renamed) but killed before its checksum file: hash it again
        digest = file_sha256(path)
    else:
        logger.info("Downloading %s to %s", url, path)
        digest = {}

        def write(f):
            w = HashingWriter(f)
            try:
                with urllib.request.urlopen(url, timeout=60) as r:
                    _copy(r, w, int(r.headers.get("Content-Length") or 0), progress, os.path.basename(path))
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise FileNotFoundError(f"cannot download {url}: {getattr(e, 'reason', e)}") from None
            digest["hex"] = w.sha.hexdigest()
            _check_digest(url, digest["hex"], sha256)  # raising here leaves nothing behind

        write_atomically(path, write)
        digest = digest["hex"]
    _check_digest(url, digest, sha256)
    write_checksum(path, digest)
    if not sha256:
        logger.info("%s: no published SHA-256; recorded %s from this first download (checked on every later read)",
                    url, digest)
    return path


def _copy(src, dst, total, progress, label):
    bar = None
    if progress and total > (1 << 20):
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=label)
        except ImportError:
            bar = None
    while True:
        block = src.read(1 << 20)
        if not block:
            break
        dst.write(block)
        if bar is not None:
            bar.update(len(block))
    if bar is not None:
        bar.close()


def remove_cached(url):
    """Removes the cached copy of `url` and its checksum file; returns the paths removed."""
    path = cached_path(url)
    removed = []
    for p in (path, path + ".sha256", path + ".lock"):
        if os.path.exists(p):
            os.remove(p)
            removed.append(p)
    return removed


def export_safetensors(state_dict, path, metadata=None):
    """Writes `state_dict` (tensors only) as a .safetensors file atomically, with its checksum file;
    returns path. `metadata`: str -> str pairs stored in the header (e.g. the config)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    data = save(tensors, metadata={k: str(v) for k, v in (metadata or {}).items()})
    write_atomically(path, lambda f: f.write(data))
    write_checksum(path, hashlib.sha256(data).hexdigest())
    return path


def read_safetensors(path):
    """Returns (state_dict, metadata) of a .safetensors file."""
    from safetensors import safe_open

    tensors = {}
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return tensors, metadata


"""Files that are either complete or absent: atomic writes and SHA-256 checksum files.

A crash mid-write never destroys the last good file (temporary file, fsync, rename). A file may have
a ``<name>.sha256`` beside it (``sha256sum -c`` format), written after it and checked on every read.
Checkpoints of runs (utils/checkpoint.py), downloaded weights (utils/weights.py) and the run folder's
files all go through here.
"""

import hashlib
import os
import tempfile

CHECKSUM_SUFFIX = ".sha256"


class CheckpointCorrupt(ValueError):
    """A checkpoint file that is unreadable or does not match its stored checksum."""


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path, write):
    """Calls write(binary file) on a temporary file beside `path`, then fsyncs and renames it onto path
    (mode 0666 minus the umask, as open() would give; mkstemp's are 0600); returns path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)  # also gives back the space a full disk needs for the error line
        # torch.save reports a failed write as a RuntimeError whose context is the OSError: name the file.
        cause = e if isinstance(e, OSError) else e.__context__
        if isinstance(cause, OSError) and cause.errno and not cause.filename:
            raise OSError(cause.errno, cause.strerror, path) from e
        raise
    # Make the rename itself durable.
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


class HashingWriter:
    """A write-only file object that hashes what passes through it (torch.save writes sequentially)."""

    def __init__(self, f):
        self.f, self.sha = f, hashlib.sha256()

    def write(self, data):
        self.sha.update(data)
        return self.f.write(data)

    def flush(self):
        self.f.flush()


def write_checksum(path, hexdigest):
    """Writes `path`'s checksum file (``<hexdigest>  <name>``, as sha256sum) atomically; returns its path."""
    line = f"{hexdigest}  {os.path.basename(path)}\n".encode()
    return write_atomically(path + CHECKSUM_SUFFIX, lambda f: f.write(line))


def stored_checksum(path):
    """Returns the SHA-256 hex digest in `path`'s checksum file, or None when it has none."""
    sidecar = path + CHECKSUM_SUFFIX
    if not os.path.isfile(sidecar):
        return None
    with open(sidecar) as f:
        words = f.read().split()
    return words[0] if words else ""


def file_sha256(path):
    """Returns the SHA-256 hex digest of a file's bytes."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            sha.update(block)
    return sha.hexdigest()


def verify_checkpoint(path):
    """Returns True when `path` matches its stored checksum, None when it has none (official files);
    raises CheckpointCorrupt when it does not match."""
    want = stored_checksum(path)
    if want is None:
        return None
    if not want or file_sha256(path) != want:
        raise CheckpointCorrupt(f"{path} does not match its checksum ({os.path.basename(path) + CHECKSUM_SUFFIX}): "
                                "the file is damaged (truncated or changed on disk)")
    return True

"""Key files: an encrypted signing key on disk, created 0600, atomically, never overwritten.

The file holds the encrypted PKCS#8 PEM of :func:`exchange.signing.keys.encrypt_private_key`.
:func:`write_private_key` writes and fsyncs it under a temporary name (``mkstemp``, mode
0600) in the target directory, then hard-links it to the final name, which fails if that
name exists: no reader ever sees a partial key, and no key is ever replaced.
:func:`read_private_key` refuses, like OpenSSH, a key file that group or others may
access, and anything that is not a small regular file (symlinks are not followed).

The only I/O of :mod:`exchange.signing`. Errors: :class:`~exchange.errors.ConfigError`
for the file itself; :class:`~exchange.errors.SignatureError` for its content and the
passphrase.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Final

from exchange.errors import ConfigError
from exchange.signing.keys import SigningKey, encrypt_private_key, load_private_key

__all__ = ["read_private_key", "write_private_key"]

_MAX_KEY_FILE_BYTES: Final = 64 * 1024


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_private_key(path: str | os.PathLike[str], key: SigningKey, passphrase: bytes) -> None:
    """Write the encrypted key to a new file with mode 0600, atomically.

    The PEM is written and fsynced under a temporary name (created 0600) in the same
    directory, then hard-linked to ``path``, which fails if ``path`` exists: a reader
    never sees a partial key file and an existing key is never replaced. Where hard
    links are not supported, the file is created with ``O_EXCL`` instead.

    Args:
        path: The key file to create.
        key: The signing key.
        passphrase: A non-empty passphrase.

    Raises:
        SignatureError: The passphrase is empty.
        ConfigError: ``path`` already exists, or the file cannot be written.
    """
    target = Path(path)
    data = encrypt_private_key(key, passphrase)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as e:
        raise ConfigError(f"cannot write key file {target}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, target)
        except FileExistsError:
            raise
        except OSError as e:
            if e.errno not in {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}:
                raise
            exclusive = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(exclusive, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    except FileExistsError:
        raise ConfigError(f"{target} already exists; refusing to overwrite a key file") from None
    except OSError as e:
        raise ConfigError(f"cannot write key file {target}: {e.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    _fsync_directory(target.parent)


def read_private_key(path: str | os.PathLike[str], passphrase: bytes) -> SigningKey:
    """Read and decrypt a key file written by :func:`write_private_key`.

    Args:
        path: The key file.
        passphrase: Its passphrase.

    Returns:
        The signing key.

    Raises:
        ConfigError: The file cannot be read, is not a regular file, is larger than
            64 KiB, or can be read or written by group or others (like OpenSSH, a key
            file must be private to its owner).
        SignatureError: As for :func:`load_private_key`.
    """
    target = Path(path)
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise ConfigError(f"cannot read key file {target}: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"key file {target} is not a regular file")
        if info.st_mode & 0o077:
            mode = stat.S_IMODE(info.st_mode)
            raise ConfigError(
                f"key file {target} is accessible by group or others (mode {mode:04o});"
                f" run chmod 600 {target}"
            )
        if info.st_size > _MAX_KEY_FILE_BYTES:
            raise ConfigError(f"key file {target} is larger than 64 KiB; not a key file")
        chunks: list[bytes] = []
        while chunk := os.read(fd, _MAX_KEY_FILE_BYTES):
            chunks.append(chunk)
            if sum(map(len, chunks)) > _MAX_KEY_FILE_BYTES:
                raise ConfigError(f"key file {target} is larger than 64 KiB; not a key file")
        data = b"".join(chunks)
    except OSError as e:
        raise ConfigError(f"cannot read key file {target}: {e.strerror}") from None
    finally:
        os.close(fd)
    return load_private_key(data, passphrase)

"""The opaque token a local task's wrapper carries in its command line, in place of names.

Every process on the machine reads every other's ``/proc/<pid>/cmdline`` (no ``hidepid``), a
task of another project among them. A wrapper's command line named its run's directory in the
home and its ``<task>.<attempt>``: the home's path, the project, workflow and run ids and the
task's name were there for any task to list. What recovery needs of it is only to recognise a
wrapper that survived a scheduler as a given attempt's, so it now carries a token instead: a
keyed digest (HMAC-SHA256, 128 bits) of the home's attempts root (the path of its logs, as
the run's directory in the earlier command line was), the attempt's run dir name and
``<task>.<attempt>``, under a key made once per home, ``<home>/wrapper-key`` (32 random
bytes, 0600, in the home that Landlock denies every task). Without the key a token names
nothing and cannot be guessed from names; with it a restarted scheduler computes the token
of each attempt its store says may run and finds its wrapper exactly, or checks a wrapper it
does not expect against the ids its environment carries (readable to the server's user
only). The root is in the digest because the key alone does not tell homes apart: a home
copied (a backup restored beside it, a staging copy) holds the same key, and its server took
the original's wrappers for its own (killed those of runs it did not know, adopted the
others).

The key is made whole or not at all (written to a temporary file of a name no other start
uses, then linked into place: two servers starting on one home keep the first's; renamed
where hard links fail). Computing a token is a copy of a keyed HMAC state prepared once and
one update: a few microseconds per start, no file read.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

KEY_FILE = "wrapper-key"
KEY_BYTES = 32
TOKEN_CHARS = 32  # hex: 128 bits of the HMAC


class WrapperTokens:
    """The tokens of one home's wrappers (:func:`token`), under its key, for the attempts
    whose logs are under ``root`` (the home's attempts root, resolved, as the executor
    names it)."""

    def __init__(self, key: bytes, root: str) -> None:
        if len(key) < 16:
            raise ValueError(f"a wrapper key needs at least 16 bytes, not {len(key)}")
        self._mac = hmac.new(key, f"{root}\0".encode(), hashlib.sha256)

    def token(self, run_dir: str, name: str) -> str:
        """The token of the attempt ``name`` (``<task>.<attempt>``) of the run whose directory
        in the home is named ``run_dir`` (its id, or ``_run_dir_name``'s digest of a long
        one). A NUL parts the two: no name holds one."""
        mac = self._mac.copy()
        mac.update(f"{run_dir}\0{name}".encode())
        return mac.hexdigest()[:TOKEN_CHARS]

    def matches(self, token: str, run_dir: str, name: str) -> bool:
        """Whether ``token`` is that attempt's (compared in constant time)."""
        return hmac.compare_digest(token, self.token(run_dir, name))

    @classmethod
    def of_home(cls, home: Path, root: str) -> WrapperTokens:
        """The home's tokens (of its attempts root ``root``), its key made if it has none."""
        return cls(_key(home, create=True), root)

    @classmethod
    def read(cls, home: Path, root: str) -> WrapperTokens | None:
        """The home's tokens, or None when it has no key (no wrapper of it carries one)."""
        try:
            return cls(_key(home, create=False), root)
        except FileNotFoundError:
            return None


def is_token(text: str) -> bool:
    """Whether ``text`` has a token's form (it may still be another home's)."""
    return len(text) == TOKEN_CHARS and all(c in "0123456789abcdef" for c in text)


def _key(home: Path, *, create: bool) -> bytes:
    path = home / KEY_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        if not create:
            raise
    # a name of its own: one named by the pid alone, left by a start that died making it,
    # refused every later start given that pid (a container's server has the same each time)
    # and so the server's start; two executors of one process would share it too
    tmp = home / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:  # another server made it first: theirs
            pass
        except OSError:  # a file system without hard links: renamed into place (a home
            if not path.exists():  # serves one server at a time: HomeInUse)
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return _read(path)


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is not a regular file; remove it to have a new key made")
        if st.st_mode & 0o077:  # a copy of the home made with a looser mode: the key is ours
            os.fchmod(f.fileno(), 0o600)
        key = f.read(KEY_BYTES + 1)
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"{path} holds {len(key)} bytes, not the {KEY_BYTES} of a wrapper key; remove it"
            " to have a new one made (wrappers running now are then recognised by their"
            " environment or log only)"
        )
    return key

"""API keys: made here, shown once, stored only as a hash.

A key is ``jk_`` + 43 URL-safe characters (256 random bits). Its first 11
characters (``jk_`` and 8 more) are its visible *prefix*, kept in clear so
people can tell keys apart in lists and logs. The key itself is stored as its
SHA-256: with 256 random bits there is nothing to brute-force, so a slow
password hash would only cost every request time, and the lookup is an index
scan on the hash, not a comparison with secrets.
"""

from __future__ import annotations

import hashlib
import re
import secrets

__all__ = ["KEY_PATTERN", "PREFIX_LENGTH", "key_hash", "key_prefix", "looks_like_key", "new_key"]

KEY_START = "jk_"
PREFIX_LENGTH = 11
KEY_PATTERN = re.compile(r"jk_[A-Za-z0-9_-]{43}")


def new_key() -> str:
    return KEY_START + secrets.token_urlsafe(32)


def looks_like_key(value: str) -> bool:
    return KEY_PATTERN.fullmatch(value) is not None


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    return key[:PREFIX_LENGTH]

"""Keys: the keys that sign access tokens and ID tokens (RFC 7515, RFC 7517, RFC 7518 RS256).

Owns the signing keys, kept in the database so that every worker and host signs and verifies with
the same ones, and sealed there with KEY_ENCRYPTION_KEY (Fernet: AES-128-CBC with HMAC-SHA256),
which is kept outside it; their rotation (the newest signs; the previous one stays published until
its tokens have expired), resealing under a new key-encryption key, and each process's parsed
copy, which is re-read when another process may have rotated them.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from dataclasses import field
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import InvalidToken
from cryptography.fernet import MultiFernet
from flask import current_app
from joserfc.jwk import KeySet
from joserfc.jwk import RSAKey

from .models import SigningKey
from .models import db
from .models import utcnow
from .settings import key_encryption_keys

KEY_RECHECK_SECONDS = 60


@dataclass
class KeyCache:
    """Parsed keys for this process. Parsing an RSA key costs ~60 ms, so it happens once per
    key set; the database stays the source of truth and is re-read when it may have changed."""

    kids: tuple[str, ...] = ()
    signing_kid: str | None = None  # the newest key that may still sign
    private: KeySet | None = None
    public: KeySet | None = None
    checked_at: float = 0.0
    # Digests of access tokens whose signature these keys verified, with their claims: a signature
    # cannot change, so it is checked once per process rather than on every request.
    verified: dict[str, Any] = field(default_factory=dict)


def key_cache() -> KeyCache:
    """This app's parsed keys; each app (and so each database) has its own."""
    return current_app.extensions.setdefault("connected_todos.keys", KeyCache())


def forget_keys() -> None:
    """Drop the parsed keys, so that the next use reads the database (tests move the clock)."""
    current_app.extensions["connected_todos.keys"] = KeyCache()


class SealedKeyError(Exception):
    """A signing key that KEY_ENCRYPTION_KEY cannot open: the wrong key, or a damaged row."""


def sealer() -> MultiFernet:
    """The key-encryption keys: the first seals, any of them opens."""
    return key_encryption_keys(current_app.config["KEY_ENCRYPTION_KEY"])


def seal(key: RSAKey) -> str:
    return sealer().encrypt(json.dumps(key.as_dict(private=True)).encode()).decode()


def unseal(row: SigningKey) -> RSAKey:
    try:
        return RSAKey.import_key(json.loads(sealer().decrypt(row.sealed_jwk.encode())))
    except InvalidToken:
        raise SealedKeyError(f"KEY_ENCRYPTION_KEY cannot open the signing key {row.kid}.") from None


def create_signing_key() -> SigningKey:
    kid = secrets.token_urlsafe(12)
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
    row = SigningKey(kid=kid, sealed_jwk=seal(key))
    db.session.add(row)
    db.session.commit()
    return row


def reseal_signing_keys() -> int:
    """Seal every signing key again with the first key-encryption key, so that the others can be
    retired from KEY_ENCRYPTION_KEY. Returns how many keys were resealed."""
    rows = db.session.scalars(sa.select(SigningKey)).all()
    for row in rows:
        try:
            row.sealed_jwk = sealer().rotate(row.sealed_jwk.encode()).decode()
        except InvalidToken:
            raise SealedKeyError(f"KEY_ENCRYPTION_KEY cannot open the signing key {row.kid}.") from None
    db.session.commit()
    return len(rows)


def load_keys(force: bool = False) -> KeyCache:
    """Return the parsed key set, reloading it when another process may have rotated it."""
    cache = key_cache()
    if not force and cache.private and time.time() - cache.checked_at < KEY_RECHECK_SECONDS:
        return cache
    rows = db.session.scalars(sa.select(SigningKey).order_by(SigningKey.id.desc())).all()
    if retired := [row.id for row in rows if row.retire_after and row.retire_after <= utcnow()]:
        db.session.execute(sa.delete(SigningKey).where(SigningKey.id.in_(retired)))
        db.session.commit()
        rows = [row for row in rows if row.id not in retired]
    kids = tuple(row.kid for row in rows)
    if rows and (kids != cache.kids or cache.private is None):
        keys = [unseal(row) for row in rows]
        cache.private = KeySet(keys)
        cache.public = KeySet.import_key_set(KeySet(keys).as_dict(private=False))
        cache.kids = kids
        cache.verified = {}  # a retired key's signatures no longer count
    cache.signing_kid = next((row.kid for row in rows if row.retire_after is None), None)
    cache.checked_at = time.time()
    return cache


def current_signing_key() -> RSAKey:
    """The newest key that may sign; older ones stay published until they are retired."""
    cache = load_keys()
    if cache.signing_kid is None:
        try:
            create_signing_key()
        except sa.exc.IntegrityError:  # another worker created it first
            db.session.rollback()
        cache = load_keys(force=True)
    return cache.private.get_by_kid(cache.signing_kid)


def rotate_signing_key(keep: int = 2) -> SigningKey:
    """Add a new signing key and retire all but the newest ``keep`` keys."""
    row = create_signing_key()
    old = db.session.scalars(sa.select(SigningKey.id).order_by(SigningKey.id.desc()).offset(keep)).all()
    if old:
        db.session.execute(sa.delete(SigningKey).where(SigningKey.id.in_(old)))
        db.session.commit()
    load_keys(force=True)
    return row

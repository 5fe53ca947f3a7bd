"""API keys, and the tenants whose memory each key may read.

A key is checked in constant time against every configured key. A key bound to tenants
may name only those tenants in ``refrag_segments`` parts; any other tenant is a 403 with
one fixed body, decided before the store is read, so the answer never says whether that
tenant or its sessions exist. Importable without torch, so the CLI can parse keys.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from refrag_agent.errors import InvalidInput
from refrag_agent.serve.errors import ApiError


@dataclass(frozen=True)
class ApiKey:
    """One API key; ``tenants``: the tenants whose stored segments it may read (``None``:
    every tenant)."""

    secret: str
    tenants: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not self.secret:
            raise InvalidInput("an API key must be a non-empty string")
        if self.tenants is not None and (not self.tenants or not all(self.tenants)):
            raise InvalidInput(
                "a key's tenants must be non-empty names (None: every tenant)",
                fix="give KEY:tenant1,tenant2, or KEY alone for every tenant",
            )

    @classmethod
    def parse(cls, text: str) -> ApiKey:
        """``KEY`` (every tenant) or ``KEY:tenant1,tenant2`` (those tenants only); the key
        itself cannot contain ``:``, tenant names cannot contain ``,``."""
        secret, sep, tenants = text.partition(":")
        if not sep:
            return cls(secret)
        return cls(secret, frozenset(t.strip() for t in tenants.split(",")))

    def may_read(self, tenant: str) -> bool:
        """Whether this key may read ``tenant``'s memory."""
        return self.tenants is None or tenant in self.tenants


def api_keys(given: str | ApiKey | Iterable[str | ApiKey] | None) -> tuple[ApiKey, ...]:
    """The keys a server accepts: one string (a key for every tenant), one :class:`ApiKey`,
    or several of either; ``None`` or nothing: no key is needed."""
    if given is None:
        return ()
    items = [given] if isinstance(given, (str, ApiKey)) else list(given)
    keys = tuple(k if isinstance(k, ApiKey) else ApiKey(k) for k in items)
    if len({k.secret for k in keys}) != len(keys):
        raise InvalidInput("the same API key is given twice", fix="give each key once")
    return keys


def authenticate(keys: tuple[ApiKey, ...], authorization: str) -> ApiKey | None:
    """The key an ``Authorization`` header carries (``None`` when no key is configured);
    401 if it carries none of ``keys``. Every key is compared, in constant time."""
    if not keys:
        return None
    scheme, _, token = authorization.partition(" ")
    given = token.strip().encode("utf-8")
    found = None
    for key in keys:
        if hmac.compare_digest(given, key.secret.encode("utf-8")):
            found = key
    if scheme.lower() != "bearer" or found is None:
        raise ApiError(
            401,
            "missing or wrong API key",
            kind="authentication_error",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return found


def forbidden() -> ApiError:
    """The one answer to a tenant the key may not read, whether that tenant exists or not."""
    return ApiError(403, "this API key may not read that tenant's memory", kind="permission_error")

"""Keys the store derives from caller ids, and the only way filters are written.

Caller strings (tenant, session, segment ids, domains) never enter a LanceDB filter
expression. The store hashes them into fixed-width hex keys that it stores in their own
columns; filters compare those columns with keys checked here to be plain hex.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import datetime, timezone

from refrag_agent.timeline import Scope, SegmentKind

_HEX = re.compile(r"[0-9a-f]{32}")


def _key(kind: str, *parts: str) -> str:
    payload = "\x00".join((kind, *parts)).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()[:32]


def tenant_key(tenant: str) -> str:
    return _key("tenant", tenant)


def session_key(scope: Scope) -> str:
    return _key("session", scope.tenant, scope.session)


def segment_key(scope: Scope, segment_id: str) -> str:
    return _key("segment", scope.tenant, scope.session, segment_id)


def domain_key(domain: str) -> str:
    return _key("domain", domain)


def encoder_key(fingerprint: str) -> str:
    return _key("encoder", fingerprint)


def _checked(key: str) -> str:
    # Defence in depth: only our own hex keys may be formatted into a filter.
    if not isinstance(key, str) or _HEX.fullmatch(key) is None:
        raise AssertionError(f"not a store key: {key!r}")
    return key


def eq(column: str, key: str) -> str:
    return f"{column} = '{_checked(key)}'"


def ne(column: str, key: str) -> str:
    return f"{column} != '{_checked(key)}'"


def isin(column: str, keys: Iterable[str]) -> str:
    listed = ", ".join(f"'{_checked(k)}'" for k in keys)
    return f"{column} IN ({listed})" if listed else "false"


def kinds_in(kinds: Iterable[SegmentKind]) -> str:
    # Enum values are a closed set of [a-z_] names; the enum check keeps it that way.
    listed = ", ".join(f"'{SegmentKind(k).value}'" for k in kinds)
    return f"kind IN ({listed})" if listed else "false"


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def time_cmp(column: str, op: str, moment: datetime) -> str:
    assert op in (">=", "<")
    micros = int(_micros(moment))
    return f"{column} {op} arrow_cast({micros}, 'Timestamp(Microsecond, Some(\"UTC\"))')"


def in_fragments(fragments: Iterable[int]) -> str:
    """Rows stored in these LanceDB fragments.

    The chunk table has no stable row ids, so a row's ``_rowid`` is its address: the
    fragment id in the high 32 bits, the offset in the fragment in the low ones.
    """
    ranges = [f"(_rowid >= {int(f) << 32} AND _rowid < {(int(f) + 1) << 32})" for f in fragments]
    return " OR ".join(ranges) if ranges else "false"


def all_of(*clauses: str | None) -> str:
    return " AND ".join(f"({c})" for c in clauses if c)


def any_of(*clauses: str) -> str:
    return " OR ".join(f"({c})" for c in clauses) if clauses else "false"

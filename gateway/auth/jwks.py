"""Caller-JWT public keys from a JWKS URL: fetched with aiohttp, cached, refreshed in background.

Each key verifies only its own algorithm (its `alg`, or the one its `kty`/`crv` implies). A token
with an unknown `kid` may trigger a refetch, at most one per cooldown, shared by every waiter,
so a flood of random `kid`s costs the key server nothing. A failed fetch keeps the last good keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import orjson

from gateway.auth.key_strength import key_weakness
from gateway.infra.singleflight import SingleFlight

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 512 * 1024
MAX_KEYS = 100
# Never retry a failing key server more often than this, even with a zero cooldown.
MIN_RETRY = 0.5

_FETCH = "jwks"  # the single-flight key: there is one document to fetch
_CURVE_ALGORITHM = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "Ed25519": "EdDSA"}


class JwksError(Exception):
    """The JWKS document could not be fetched or holds no usable key."""


def _implied_algorithms(jwk: Mapping[str, Any], allowed: Iterable[str]) -> list[str]:
    """The algorithms a JWK may verify: its own `alg`, or those its key type implies."""
    declared = jwk.get("alg")
    if declared is not None:
        return [declared] if declared in allowed else []
    kty = jwk.get("kty")
    if kty == "RSA":
        return [a for a in allowed if a in ("RS256", "RS384", "RS512")]
    crv = jwk.get("crv")
    if kty in ("EC", "OKP") and isinstance(crv, str):
        implied = _CURVE_ALGORITHM.get(crv)
        return [implied] if implied in allowed else []
    return []


def _usable(jwk: Any) -> bool:
    if not isinstance(jwk, dict):
        return False
    # A JWKS is public: a symmetric ("oct") key in it is a leak, never a verification key.
    if jwk.get("kty") not in ("RSA", "EC", "OKP"):
        return False
    if jwk.get("use", "sig") != "sig":
        return False
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return False
    kid = jwk.get("kid")
    return kid is None or (isinstance(kid, str) and 0 < len(kid) <= 256)


def _canonical(jwk: dict[str, Any]) -> bytes:
    """The JWK as sorted JSON, for the fingerprint; any member value, however odd, serialises."""
    # Not orjson: it refuses integers past 64 bits, which a document handed to load() may hold.
    return json.dumps(jwk, sort_keys=True, default=repr).encode()


@dataclass(frozen=True, slots=True)
class KeySet:
    """Usable keys by kid and algorithm, and a fingerprint that changes when they do."""

    table: dict[str | None, dict[str, jwt.PyJWK]]
    fingerprint: bytes


def keys_from_jwks(document: Any, algorithms: Iterable[str]) -> KeySet:
    """The usable keys of a JWKS document; JwksError if there are none."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError("JWKS document has no keys list")
    allowed = tuple(algorithms)
    table: dict[str | None, dict[str, jwt.PyJWK]] = {}
    seen: dict[tuple[str | None, str], bytes] = {}
    ambiguous: set[tuple[str | None, str]] = set()
    for jwk in document["keys"][:MAX_KEYS]:
        if not _usable(jwk):
            log.info("JWKS key skipped: not a public signature key with a sane kid")
            continue
        kid = jwk.get("kid")
        if (weakness := key_weakness(jwk)) is not None:
            log.warning("JWKS key %r refused as weak: %s", kid, weakness)
            continue
        for alg in _implied_algorithms(jwk, allowed):
            try:
                key = jwt.PyJWK(jwk, algorithm=alg)
            # Odd member types can surface as plain Python errors from the key constructors.
            except (jwt.PyJWTError, TypeError, ValueError, AttributeError, KeyError) as exc:
                log.info("JWKS key %r skipped for %s: %s", kid, alg, type(exc).__name__)
                continue
            # RSA under 2,048 bits (RFC 7518 section 3.3).
            if key.Algorithm.check_key_length(key.key) is not None:
                log.info("JWKS key %r skipped for %s: key too short", kid, alg)
                continue
            if (kid, alg) in seen:
                # Two keys claiming one kid and alg: trusting either would be a guess.
                ambiguous.add((kid, alg))
            seen[kid, alg] = _canonical(jwk)
            table.setdefault(kid, {})[alg] = key
    for kid, alg in ambiguous:
        log.warning("JWKS kid %r names two %s keys; neither is used", kid, alg)
        del table[kid][alg]
        del seen[kid, alg]
    table = {kid: slot for kid, slot in table.items() if slot}
    if not table:
        raise JwksError("JWKS document holds no usable key for the allowed algorithms")
    fingerprint = orjson.dumps(
        sorted([str(kid), alg, jwk.decode()] for (kid, alg), jwk in seen.items())
    )
    return KeySet(table=table, fingerprint=fingerprint)


class JwksKeys:
    """The key set behind GATEWAY_JWT_JWKS_URL; `generation` changes whenever the keys do."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        algorithms: Iterable[str],
        lifespan: float = 300.0,
        cooldown: float = 30.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._url = url
        self._algorithms = tuple(algorithms)
        self._lifespan = lifespan
        self._cooldown = cooldown
        self._timeout = timeout
        self._retry = max(MIN_RETRY, min(cooldown, lifespan))
        self._clock = clock
        self._keys: KeySet | None = None
        self._last_attempt = -math.inf
        self._last_success = -math.inf
        self._last_ok = False
        self._flight: SingleFlight[bool] = SingleFlight()
        self._runner: asyncio.Task[None] | None = None
        self.generation = 0
        self.fetches = 0
        self.failures = 0

    @property
    def loaded(self) -> bool:
        """True once a fetch has succeeded (the keys may since have gone stale)."""
        return self._keys is not None

    def load(self, document: Any) -> None:
        """Replace the keys with a JWKS document's; JwksError (keys untouched) if unusable."""
        keys = keys_from_jwks(document, self._algorithms)
        if self._keys is None or keys.fingerprint != self._keys.fingerprint:
            self.generation += 1
        self._keys = keys

    def find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        """The key for this kid and alg; None if unknown; LookupError if the kid is ambiguous."""
        table = {} if self._keys is None else self._keys.table
        if kid is not None:
            slot = table.get(kid)
            return None if slot is None else slot.get(alg)
        # Without a kid, only a key set with exactly one key for this alg is unambiguous.
        matches = [slot[alg] for slot in table.values() if alg in slot]
        if len(matches) > 1:
            raise LookupError("several keys could verify this token; it must name a kid")
        return matches[0] if matches else None

    def knows(self, kid: str | None) -> bool:
        """True if the kid is in the current key set."""
        return kid is not None and self._keys is not None and kid in self._keys.table

    async def refresh(self) -> bool:
        """Fetch now (joining a fetch already under way); True if the keys are fresh."""
        # One fetch shared by every waiter; should the caller running it give up, the next
        # one waiting runs it (infra/singleflight.py).
        return await self._flight.run(_FETCH, self._fetch)

    async def refetch_for_unknown_kid(self) -> bool:
        """Refetch for a kid we lack, unless one ran within the cooldown; True if one ran."""
        if not self._flight.running(_FETCH) and self._clock() - self._last_attempt < self._cooldown:
            return False
        await self.refresh()
        return True

    async def _fetch(self) -> bool:
        self._last_attempt = self._clock()
        self.fetches += 1
        try:
            async with asyncio.timeout(self._timeout):
                document = await self._download()
            self.load(document)
        except Exception as exc:  # noqa: BLE001 - whatever the key server sends, the keys stay
            self.failures += 1
            self._last_ok = False
            # The URL stays out of the log: it may carry credentials in its query.
            log.warning(
                "JWKS fetch failed (%s); keeping %d known kids",
                exc if isinstance(exc, JwksError) else type(exc).__name__,
                0 if self._keys is None else len(self._keys.table),
            )
            return False
        self._last_success = self._clock()
        self._last_ok = True
        return True

    async def _download(self) -> Any:
        async with self._session.get(
            self._url, allow_redirects=False, headers={"Accept": "application/json"}
        ) as resp:
            if resp.status != 200:
                raise JwksError(f"HTTP status {resp.status}")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksError("JWKS document is too large")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise JwksError("JWKS document is not JSON") from None

    def _next_refresh_in(self) -> float:
        due = (
            self._last_success + self._lifespan
            if self._last_ok
            else self._last_attempt + self._retry
        )
        return max(0.0, due - self._clock())

    def start(self) -> None:
        """Start the background refresh."""
        self._runner = asyncio.create_task(self.run())

    async def aclose(self) -> None:
        """Stop the background refresh and any fetch under way."""
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        await self._flight.cancel_all()
        self._runner = None

    async def run(self) -> None:
        """Refresh before the lifespan runs out, and retry failures; runs until cancelled."""
        while True:
            delay = self._next_refresh_in()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            await self.refresh()

"""JWKS keys: which keys are usable, fetching, failure, cooldown, rotation, and the app's wiring."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp
import hypothesis
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import strategies as st

from gateway.auth.jwks import JwksError, JwksKeys, keys_from_jwks
from gateway.auth.verifier import JwtVerifier
from gateway.errors import Unauthenticated
from gateway.settings import Settings
from gateway.tokens.directory import add_mapping
from tests.helpers import audit_rows, auth, eventually
from tests.jwks_server import JwksServer, TestKey, claims, forged, hs_token, test_keys

V1 = "/api/v1/dashboards/iframe-token"
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
ASYMMETRIC = ("RS256", "ES256", "EdDSA")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session():
    """A client session for JwksKeys, closed after the test."""
    async with aiohttp.ClientSession() as client:
        yield client


def make_keys(session, jwks: JwksServer, **kwargs: Any) -> JwksKeys:
    kwargs.setdefault("timeout", 2.0)
    return JwksKeys(session, jwks.url, algorithms=ASYMMETRIC, **kwargs)


# The document: which keys count.


def test_each_key_verifies_only_its_own_algorithm() -> None:
    """RSA, EC and Ed25519 keys load under their own alg and no other."""
    k = test_keys()
    keys = keys_from_jwks({"keys": [k.rsa.jwk(), k.ec.jwk(), k.ed.jwk()]}, ASYMMETRIC)
    assert {kid: sorted(slot) for kid, slot in keys.table.items()} == {
        "rsa-1": ["RS256"],
        "ec-1": ["ES256"],
        "ed-1": ["EdDSA"],
    }


def test_key_without_alg_gets_the_algorithm_its_type_implies() -> None:
    """An RSA key without alg verifies the allowed RS algorithms; a P-256 key only ES256."""
    k = test_keys()
    keys = keys_from_jwks(
        {"keys": [k.rsa.jwk(alg=None), k.ec.jwk(alg=None)]}, ("RS256", "RS512", "ES256", "ES384")
    )
    assert sorted(keys.table["rsa-1"]) == ["RS256", "RS512"]
    assert sorted(keys.table["ec-1"]) == ["ES256"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"use": "enc"}, "encryption key"),
        ({"key_ops": ["encrypt"]}, "key_ops without verify"),
        ({"alg": "RS512"}, "alg not allowed"),
        ({"alg": "ES256"}, "alg of another key type"),
        ({"kid": 7}, "non-string kid"),
        ({"n": "AQAB"}, "broken modulus"),
    ],
)
def test_unusable_keys_are_skipped(change: dict[str, Any], why: str) -> None:
    """A key that is not a public signature key for an allowed algorithm is ignored."""
    k = test_keys()
    keys = keys_from_jwks({"keys": [k.rsa.jwk(**change), k.ec.jwk()]}, ASYMMETRIC)
    assert "rsa-1" not in keys.table, why
    assert 7 not in keys.table


def test_symmetric_and_short_keys_are_skipped() -> None:
    """An "oct" key in a public JWKS, or RSA under 2,048 bits, never verifies anything."""
    k = test_keys()
    weak = rsa.generate_private_key(65537, 1024)  # noqa: S505 - the weak key is the point
    short = TestKey("short", "RS256", weak)
    oct_key = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAxMjM0"}
    keys = keys_from_jwks({"keys": [oct_key, short.jwk(), k.ec.jwk()]}, ("HS256", *ASYMMETRIC))
    assert set(keys.table) == {"ec-1"}


def test_two_keys_with_one_kid_and_alg_are_both_dropped() -> None:
    """Ambiguity is refused, not resolved by order."""
    k = test_keys()
    keys = keys_from_jwks({"keys": [k.rsa.jwk(), k.attacker_rsa.jwk(), k.ec.jwk()]}, ASYMMETRIC)
    assert set(keys.table) == {"ec-1"}


@pytest.mark.parametrize(
    "document",
    [[], {}, {"keys": "x"}, {"keys": []}, {"keys": [{"kty": "oct", "k": "AAAA"}]}, None],
)
def test_documents_without_usable_keys_are_errors(document: Any) -> None:
    """A JWKS with nothing usable raises, so the caller keeps its last good keys."""
    with pytest.raises(JwksError):
        keys_from_jwks(document, ASYMMETRIC)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_JWK_MEMBERS = st.sampled_from(["kty", "alg", "crv", "kid", "use", "key_ops", "n", "e", "x", "y"])


_KEYS = (test_keys().rsa, test_keys().ec, test_keys().ed)
# Members a JWK may carry that change nothing about the key (RFC 7517 section 4 allows extras).
_HARMLESS = st.dictionaries(
    st.sampled_from(["x5t", "ext", "note", "iat", "x-custom"]), _JSON, max_size=3
)
# One change that makes a key unusable, and why.
_BREAKAGES = st.sampled_from(
    [
        {"kty": "oct"},
        {"kty": None},
        {"use": "enc"},
        {"key_ops": ["encrypt"]},
        {"key_ops": "verify"},
        {"kid": ""},
        {"kid": 7},
        {"kid": "k" * 257},
        {"alg": "HS256"},
        {"alg": "none"},
    ]
)


def _verifies(keys: Any, key: TestKey) -> bool:
    """The loaded key for `key`'s kid and alg checks a signature made with its private key."""
    slot = keys.table[key.kid]
    token = key.sign({"sub": "s", "exp": int(time.time()) + 60})
    return jwt.decode(token, slot[key.alg], algorithms=[key.alg])["sub"] == "s"


@hypothesis.settings(max_examples=60, deadline=None, derandomize=True, database=None)
@hypothesis.given(
    st.lists(st.sampled_from(range(len(_KEYS))), min_size=1, max_size=3, unique=True),
    st.lists(_HARMLESS, min_size=3, max_size=3),
)
def test_valid_jwks_documents_load_and_verify(picks: list[int], extras: list[Any]) -> None:
    """Real keys with harmless extra members: every one loads and verifies its own signatures."""
    chosen = [_KEYS[i] for i in picks]
    keys = keys_from_jwks(
        {"keys": [k.jwk(**extra) for k, extra in zip(chosen, extras, strict=False)]}, ASYMMETRIC
    )
    assert set(keys.table) == {k.kid for k in chosen}
    for key in chosen:
        assert set(keys.table[key.kid]) == {key.alg}
        assert _verifies(keys, key)


@hypothesis.settings(max_examples=60, deadline=None, derandomize=True, database=None)
@hypothesis.given(
    st.lists(st.tuples(st.sampled_from(range(len(_KEYS))), _BREAKAGES), min_size=1, max_size=3)
)
def test_invalid_jwks_documents_raise_jwks_error(broken: list[tuple[int, Any]]) -> None:
    """Documents whose every key is broken (wrong type, use, ops, kid or alg) raise JwksError."""
    document = {"keys": [_KEYS[i].jwk(**change) for i, change in broken]}
    with pytest.raises(JwksError, match="no usable key"):
        keys_from_jwks(document, ASYMMETRIC)


@hypothesis.settings(max_examples=150, deadline=None, derandomize=True, database=None)
@hypothesis.given(
    st.lists(
        st.builds(
            lambda base, extra: {**base, **extra},
            st.sampled_from([k.jwk() for k in _KEYS] + [{}]),
            st.dictionaries(_JWK_MEMBERS, _JSON, max_size=3),
        ),
        max_size=4,
    ),
    st.sampled_from(range(len(_KEYS))),
)
def test_any_jwks_document_keeps_its_intact_keys(jwk_list: list[Any], intact: int) -> None:
    """Random members changed on real keys, beside one intact key: never a crash, and the intact
    key always loads and verifies unless a changed copy claims its kid and alg (ambiguous)."""
    key = _KEYS[intact]
    document = {"keys": [*jwk_list, key.jwk()]}
    try:
        keys = keys_from_jwks(document, ASYMMETRIC)
    except JwksError:
        keys = None
    others = [j for j in jwk_list if isinstance(j, dict) and j.get("kid") == key.kid]
    if not others:
        assert keys is not None, "an intact key beside junk must still load"
        assert _verifies(keys, key)
    if keys is not None:
        for slot in keys.table.values():
            assert set(slot) <= set(ASYMMETRIC)


# Fetching.


async def test_fetch_loads_keys_and_generation_tracks_changes(session, jwks) -> None:
    """A fetch loads the keys; generation moves only when the key set really changes."""
    keys = make_keys(session, jwks)
    assert await keys.refresh()
    assert (keys.loaded, keys.generation, jwks.fetches) == (True, 1, 1)
    assert keys.find("rsa-1", "RS256") is not None
    assert await keys.refresh()
    assert keys.generation == 1
    jwks.keys = [*jwks.keys, test_keys().rsa_next.jwk()]
    assert await keys.refresh()
    assert keys.generation == 2
    assert keys.find("rsa-2", "RS256") is not None


@pytest.mark.parametrize(
    ("status", "body", "delay"),
    [
        pytest.param(500, None, 0.0, id="http-500"),
        pytest.param(302, None, 0.0, id="redirect-not-followed"),
        pytest.param(200, b"{not json", 0.0, id="not-json"),
        pytest.param(200, b'{"keys": []}', 0.0, id="no-keys"),
        pytest.param(200, b" " * (600 * 1024), 0.0, id="too-large"),
        pytest.param(200, None, 3.0, id="timeout"),
    ],
)
async def test_failed_fetch_keeps_last_good_keys(session, jwks, status, body, delay) -> None:
    """After a good fetch, any failing one (within its timeout) leaves the keys in place."""
    keys = make_keys(session, jwks, timeout=0.5)
    assert await keys.refresh()
    jwks.status, jwks.body, jwks.delay = status, body, delay
    started = time.monotonic()
    assert not await keys.refresh()
    assert time.monotonic() - started < 2.5
    assert keys.failures == 1
    assert keys.find("rsa-1", "RS256") is not None
    assert keys.generation == 1


async def test_unknown_kid_refetch_is_limited_by_the_cooldown(session, jwks) -> None:
    """1,000 unknown kids cause one fetch per cooldown, however fast they come."""
    clock = Clock()
    keys = make_keys(session, jwks, cooldown=30.0, clock=clock)
    await keys.refresh()
    verifier = JwtVerifier(_settings(), keys)

    async def flood(count: int) -> None:
        for _ in range(count):
            token = forged(uuid.uuid4().hex)
            with pytest.raises(Unauthenticated) as err:
                await verifier.verify(token)
            assert err.value.reason == "unknown_kid"

    await flood(1000)
    assert jwks.fetches == 1  # the first fetch is less than a cooldown ago
    clock.now += 30.0
    await flood(1000)
    assert jwks.fetches == 2
    clock.now += 29.0
    await flood(1000)
    assert jwks.fetches == 2


async def test_concurrent_unknown_kids_share_one_fetch(session, jwks) -> None:
    """Callers arriving while a refetch runs wait for that one instead of starting their own."""
    keys = make_keys(session, jwks, cooldown=0.0)
    await keys.refresh()
    jwks.delay = 0.3
    verifier = JwtVerifier(_settings(), keys)
    token = forged("unknown")
    results = await asyncio.gather(
        *(verifier.verify(token) for _ in range(50)), return_exceptions=True
    )
    assert all(isinstance(r, Unauthenticated) for r in results)
    assert jwks.fetches == 2


async def test_background_refresh_follows_the_lifespan(session, jwks) -> None:
    """The background task refetches once the lifespan is over, and stops on aclose()."""
    keys = make_keys(session, jwks, lifespan=1.0)
    await keys.refresh()
    started = time.monotonic()
    keys.start()
    await eventually(lambda: jwks.fetches >= 2, timeout=10.0)
    assert time.monotonic() - started >= 0.9
    await keys.aclose()
    fetches = jwks.fetches
    await asyncio.sleep(1.2)
    assert jwks.fetches == fetches


def _settings() -> Settings:
    """Settings for a JwtVerifier used without the app: JWKS algorithms only."""
    return Settings(
        database_url="postgresql://unused",
        redis_url="redis://unused",
        api_key_id="k",
        signing_secret=b"s" * 32,
        jwt_jwks_url="http://127.0.0.1/unused",
        jwt_algorithms=ASYMMETRIC,
    )


# Through the app.


async def test_rotated_in_key_passes_after_one_refetch(make_client, jwks_settings, jwks, db):
    """A token with a kid published after start-up passes after exactly one refetch."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    client = await make_client(jwks_settings, jwt_jwks_cooldown=0.0)
    assert jwks.fetches == 1
    k = test_keys()
    jwks.keys = [*jwks.keys, k.rsa_next.jwk()]
    for _ in range(3):
        resp = await client.post(V1, json=BODY, headers=auth(k.rsa_next.sign(claims())))
        assert resp.status == 200, await resp.text()
    assert jwks.fetches == 2


async def test_removed_key_stops_passing_after_the_lifespan(make_client, jwks_settings, jwks, db):
    """A key dropped from the JWKS still verifies until the lifespan ends, then never again."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    client = await make_client(jwks_settings, jwt_jwks_lifespan=1.0, jwt_jwks_cooldown=30.0)
    k = test_keys()
    jwks.keys = [k.ec.jwk()]
    removed = time.monotonic()
    first = await client.post(V1, json=BODY, headers=auth(k.rsa.sign(claims())))
    assert first.status == 200
    deadline = removed + 10.0
    while True:
        resp = await client.post(V1, json=BODY, headers=auth(k.rsa.sign(claims())))
        if resp.status != 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert resp.status == 401
    (row,) = await audit_rows(db, resp.headers["X-Request-ID"])
    assert json.loads(row["detail"])["reason"] == "unknown_kid"
    assert jwks.fetches >= 2
    ec = await client.post(V1, json=BODY, headers=auth(k.ec.sign(claims())))
    assert ec.status == 200


async def test_flood_of_random_kids_fetches_once_per_cooldown(make_client, jwks_settings, jwks, db):
    """1,000 requests with random kids through the endpoint: at most one fetch per cooldown."""
    cooldown = 2.0
    client = await make_client(jwks_settings, jwt_jwks_cooldown=cooldown)
    assert jwks.fetches == 1
    await asyncio.sleep(cooldown)  # let the start-up fetch's cooldown run out
    tokens = [forged(uuid.uuid4().hex) for _ in range(1000)]
    limit = asyncio.Semaphore(50)

    async def call(token: str) -> int:
        async with limit:
            resp = await client.post(V1, json=BODY, headers=auth(token))
            await resp.read()
            return resp.status

    started = time.monotonic()
    statuses = await asyncio.gather(*(call(t) for t in tokens))
    elapsed = time.monotonic() - started
    assert set(statuses) == {401}
    refetches = jwks.fetches - 1
    assert 1 <= refetches <= 1 + int(elapsed // cooldown)


async def test_jwks_down_at_start_is_503_until_it_answers(make_client, jwks_settings, jwks, db):
    """No keys yet: JWKS tokens get 503, HS tokens still pass; recovery needs no restart."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    jwks.status = 503
    client = await make_client(jwks_settings, jwt_jwks_cooldown=0.0)
    k = test_keys()
    down = await client.post(V1, json=BODY, headers=auth(k.rsa.sign(claims())))
    assert down.status == 503
    assert "Retry-After" in down.headers
    (row,) = await audit_rows(db, down.headers["X-Request-ID"])
    assert (row["event"], json.loads(row["detail"])["reason"]) == (
        "unavailable",
        "jwks_unavailable",
    )
    hs = await client.post(V1, json=BODY, headers=auth(hs_token({"alg": "HS256"}, claims())))
    assert hs.status == 200
    jwks.status = 200
    up = await client.post(V1, json=BODY, headers=auth(k.rsa.sign(claims())))
    assert up.status == 200


async def test_slow_jwks_does_not_hold_start_up(make_client, jwks_settings, jwks, db):
    """A key server slower than the fetch timeout delays start-up by the timeout at most."""
    jwks.delay = 5.0
    started = time.monotonic()
    client = await make_client(jwks_settings, jwt_jwks_timeout=0.3, jwt_jwks_cooldown=30.0)
    assert time.monotonic() - started < 3.0
    resp = await client.post(V1, json=BODY, headers=auth(test_keys().rsa.sign(claims())))
    assert resp.status == 503


async def test_readyz_is_503_naming_jwks_until_keys_load(make_client, jwks_settings, jwks, db):
    """A configured JWKS that never answered: /readyz 503 with `jwks` failing; ready once loaded."""
    jwks.status = 503
    client = await make_client(jwks_settings, jwt_jwks_cooldown=0.0, jwt_jwks_lifespan=1.0)
    down = await client.get("/readyz")
    assert down.status == 503
    body = await down.json()
    assert body["failing"] == ["jwks"]
    assert body["checks"]["postgresql"] == body["checks"]["redis"] == "ok"
    jwks.status = 200

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    deadline = time.monotonic() + 10
    while not await ready():
        assert time.monotonic() < deadline, "readyz never became ready after the JWKS answered"
        await asyncio.sleep(0.1)
    assert (await (await client.get("/readyz")).json())["checks"]["jwks"] == "ok"


async def test_readyz_has_no_jwks_check_without_a_jwks_url(client) -> None:
    """Only an HS secret: /readyz is ready and lists no jwks check."""
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert "jwks" not in (await resp.json())["checks"]

"""Hostile caller tokens through the real endpoint: each case's status, code, audit row and reason.

The cases follow what Envoy's jwt_authn, golang-jwt, Kong's jwt plugin and the Wycheproof JWS
vectors throw at their verifiers. The app runs with the HS secret and the JWKS keys together,
an issuer, an audience, a one-hour maximum lifetime and a zero refetch cooldown: with no
cooldown to hide behind, a case whose cheap checks fail must still cause no JWKS fetch.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck
from hypothesis import strategies as st
from multidict import CIMultiDict

from gateway.tokens.directory import add_mapping
from tests.helpers import audit_rows
from tests.jwks_server import AUDIENCE, ISSUER, JwksServer, b64, claims, hs_token, test_keys

V1 = "/api/v1/dashboards/iframe-token"
BODY = {"tenant_id": "org-123", "workspace_id": "workspace-456"}
HS = {"alg": "HS256", "typ": "JWT"}
CODES = {401: ("unauthenticated", "auth_failed"), 403: ("forbidden", "access_denied")}

Build = Callable[[JwksServer], list[str]]


def bearer(token: str) -> list[str]:
    return [f"Bearer {token}"]


def good_hs() -> str:
    return hs_token(HS, claims())


def signed(**overrides: Any) -> list[str]:
    """A correctly HS256-signed token whose claims differ from the good ones as given."""
    return bearer(hs_token(HS, {**claims(), **overrides}))


def without(name: str) -> list[str]:
    return bearer(hs_token(HS, {k: v for k, v in claims().items() if k != name}))


def header(**members: Any) -> list[str]:
    """A correctly HS256-signed token with exactly these header members."""
    return bearer(hs_token(members, claims()))


def raw_header(data: bytes) -> list[str]:
    return bearer(hs_token(data, json.dumps(claims()).encode()))


def raw_payload(data: bytes | str) -> list[str]:
    return bearer(
        hs_token(json.dumps(HS).encode(), data.encode() if isinstance(data, str) else data)
    )


def extra_member(member: str, **overrides: Any) -> str:
    """The good claims (changed as given) as JSON text with one more member appended."""
    return json.dumps(claims(**overrides))[:-1] + ", " + member + "}"


def unsigned(alg: str) -> list[str]:
    return bearer(f"{b64({'alg': alg, 'typ': 'JWT'})}.{b64(claims())}.")


def segments(count: int) -> list[str]:
    parts = good_hs().split(".")
    return bearer(".".join((parts * 2)[:count]))


def tamper(index: int, change: Callable[[str], str]) -> list[str]:
    """A good token with one segment changed."""
    parts = good_hs().split(".")
    parts[index] = change(parts[index])
    return bearer(".".join(parts))


def _non_canonical(signature: str) -> str:
    # 43 characters hold 32 bytes and 2 spare bits; a set spare bit is another spelling.
    return signature[:-1] + ("B" if signature[-1] != "B" else "C")


def _padded(signature: str) -> str:
    return base64.urlsafe_b64encode(base64.urlsafe_b64decode(signature + "=")).decode()


def rs(**members: Any) -> Build:
    """An RS256 token signed by a key the JWKS does not hold, with these header members."""
    return lambda _s: bearer(test_keys().attacker_rsa.sign(claims(), **members))


def ok(build: Callable[[], list[str]]) -> Build:
    return lambda _s: build()


def case(case_id: str, build: Build, status: int, reason: str) -> Any:
    return pytest.param(build, status, reason, id=case_id)


def _now() -> int:
    return int(time.time())


FULLWIDTH_ORG_123 = "\uff4f\uff52\uff47-\uff11\uff12\uff13"


def _cases() -> list[Any]:
    k = test_keys()
    # Cases near the leeway read the clock when they run (inside their lambda), not here at
    # collection: a slow suite would otherwise age them past the leeway before they run.
    now = int(time.time())
    deep = '{"exp":%d,"a":%s%s}' % (now + 600, "[" * 3000, "]" * 3000)  # noqa: UP031
    rsa_pem = k.rsa.public_pem()
    return [
        # The Authorization header itself.
        case("missing-header", ok(list), 401, "missing_token"),
        case("wrong-scheme-basic", ok(lambda: ["Basic dXNlcjpwYXNz"]), 401, "wrong_scheme"),
        case("scheme-without-token", ok(lambda: ["Bearer"]), 401, "wrong_scheme"),
        case("token-without-scheme", ok(lambda: [good_hs()]), 401, "wrong_scheme"),
        case("two-headers", ok(lambda: bearer(good_hs()) * 2), 401, "multiple_headers"),
        # Shape and encoding.
        case("one-segment", ok(lambda: segments(1)), 401, "malformed"),
        case("two-segments", ok(lambda: segments(2)), 401, "malformed"),
        case("four-segments", ok(lambda: segments(4)), 401, "malformed"),
        case("five-segments-jwe", ok(lambda: segments(5)), 401, "malformed"),
        case("empty-header-segment", ok(lambda: tamper(0, lambda _: "")), 401, "malformed"),
        case("empty-payload-segment", ok(lambda: tamper(1, lambda _: "")), 401, "malformed"),
        case("all-segments-empty", ok(lambda: bearer("..")), 401, "malformed"),
        case("non-base64url-char", ok(lambda: tamper(1, lambda p: p + "!")), 401, "malformed"),
        case(
            "std-base64-alphabet", ok(lambda: tamper(2, lambda p: "+/" + p[2:])), 401, "malformed"
        ),
        case("padding", ok(lambda: tamper(2, _padded)), 401, "malformed"),
        case(
            "whitespace-inside",
            ok(lambda: tamper(1, lambda p: p[:5] + " " + p[5:])),
            401,
            "malformed",
        ),
        case("non-canonical-base64", ok(lambda: tamper(2, _non_canonical)), 401, "malformed"),
        case("header-not-json", ok(lambda: raw_header(b"alg=HS256")), 401, "invalid_json"),
        case("header-json-array", ok(lambda: raw_header(b'["HS256"]')), 401, "not_an_object"),
        case("payload-not-json", ok(lambda: raw_payload("{'exp': 1}")), 401, "invalid_json"),
        case("payload-json-string", ok(lambda: raw_payload('"org-123"')), 401, "not_an_object"),
        case("payload-bad-utf8", ok(lambda: raw_payload(b'{"sub":"\xff"}')), 401, "invalid_json"),
        case("payload-nan", ok(lambda: raw_payload('{"exp":NaN}')), 401, "invalid_json"),
        case("nesting-3000-deep", ok(lambda: raw_payload(deep)), 401, "invalid_json"),
        case("over-8-kib", ok(lambda: signed(pad="x" * 6200)), 401, "token_too_large"),
        # Algorithms.
        case("alg-none", ok(lambda: unsigned("none")), 401, "alg_none"),
        case("alg-None", ok(lambda: unsigned("None")), 401, "alg_none"),
        case("alg-NONE", ok(lambda: unsigned("NONE")), 401, "alg_none"),
        case("alg-nOnE", ok(lambda: unsigned("nOnE")), 401, "alg_none"),
        case("alg-none-hmac-signed", ok(lambda: header(alg="none")), 401, "alg_none"),
        case("alg-missing", ok(lambda: header(typ="JWT")), 401, "algorithm"),
        case("alg-number", ok(lambda: header(alg=256)), 401, "algorithm"),
        case("alg-list", ok(lambda: header(alg=["HS256"])), 401, "algorithm"),
        case("alg-HS512-not-allowed", ok(lambda: header(alg="HS512")), 401, "algorithm"),
        case("alg-lowercase-hs256", ok(lambda: header(alg="hs256")), 401, "algorithm"),
        case(
            "alg-RS384-not-allowed", ok(lambda: header(alg="RS384", kid="rsa-1")), 401, "algorithm"
        ),
        # Keys: HS/RS confusion, embedded and remote keys, kid.
        case(
            "hs256-signed-with-rsa-public-key",
            ok(lambda: bearer(hs_token({"alg": "HS256", "kid": "rsa-1"}, claims(), rsa_pem))),
            401,
            "signature",
        ),
        case("embedded-jwk-header", rs(kid=None, jwk=k.attacker_rsa.jwk()), 401, "key_in_header"),
        case("jku-header", lambda s: rs(jku=s.trap_url("jku"))(s), 401, "key_in_header"),
        case("x5u-header", lambda s: rs(x5u=s.trap_url("x5u"))(s), 401, "key_in_header"),
        case("x5c-header", rs(x5c=["MIIB"]), 401, "key_in_header"),
        case("unknown-kid", rs(kid="no-such-kid"), 401, "unknown_kid"),
        case("kid-number", ok(lambda: header(alg="HS256", kid=123)), 401, "invalid_kid"),
        case("kid-empty", rs(kid=""), 401, "invalid_kid"),
        case("kid-null", ok(lambda: header(alg="HS256", kid=None)), 401, "invalid_kid"),
        case("kid-path-traversal", rs(kid="../../../../etc/passwd"), 401, "unknown_kid"),
        case("kid-sql", rs(kid="x' UNION SELECT 'rsa-1"), 401, "unknown_kid"),
        case("kid-of-ec-key-on-rs256", rs(kid="ec-1"), 401, "key_algorithm"),
        case("known-kid-forged-rs256", rs(kid="rsa-1"), 401, "signature"),
        case(
            "known-kid-forged-es256",
            ok(lambda: bearer(k.attacker_ec.sign(claims()))),
            401,
            "signature",
        ),
        case("crit-header", ok(lambda: header(alg="HS256", crit=["exp"], exp=1)), 401, "crit"),
        case("crit-b64", ok(lambda: header(alg="HS256", b64=False, crit=["b64"])), 401, "crit"),
        # Duplicate member names (PyJWT alone keeps the last one).
        case(
            "duplicate-tenant-claim",
            ok(
                lambda: raw_payload(
                    # Parsers that keep the last duplicate would let this caller into org-123.
                    extra_member('"organization_id": "org-123"', organization_id="org-999")
                )
            ),
            401,
            "duplicate_member",
        ),
        case(
            "duplicate-escaped-name",
            ok(lambda: raw_payload(extra_member('"\\u0073ub": "someone-else"'))),
            401,
            "duplicate_member",
        ),
        case(
            "duplicate-alg",
            ok(lambda: raw_header(b'{"alg":"none","alg":"HS256"}')),
            401,
            "duplicate_member",
        ),
        # Registered claims.
        case("exp-missing", ok(lambda: without("exp")), 401, "missing_claim"),
        case("exp-null", ok(lambda: signed(exp=None)), 401, "invalid_exp"),
        case("exp-string", ok(lambda: signed(exp=str(now + 600))), 401, "invalid_exp"),
        case("exp-list", ok(lambda: signed(exp=[now + 600])), 401, "invalid_exp"),
        case("exp-true", ok(lambda: signed(exp=True)), 401, "invalid_exp"),
        case("exp-huge", ok(lambda: signed(exp=10**20)), 401, "invalid_exp"),
        case("exp-in-the-past", ok(lambda: signed(exp=_now() - 120)), 401, "expired"),
        case("nbf-in-the-future", ok(lambda: signed(nbf=_now() + 120)), 401, "not_yet_valid"),
        case("nbf-string", ok(lambda: signed(nbf=str(now))), 401, "invalid_nbf"),
        case("iat-in-the-future", ok(lambda: signed(iat=_now() + 120)), 401, "not_yet_valid"),
        case("lifetime-over-max-age", ok(lambda: signed(exp=now + 7200)), 401, "lifetime"),
        case("iss-wrong", ok(lambda: signed(iss="https://evil.example.test/")), 401, "issuer"),
        case("iss-prefix-of-ours", ok(lambda: signed(iss=ISSUER[:-1])), 401, "issuer"),
        case("iss-ours-plus-suffix", ok(lambda: signed(iss=ISSUER + "evil")), 401, "issuer"),
        case("iss-list", ok(lambda: signed(iss=[ISSUER])), 401, "issuer"),
        case("iss-missing", ok(lambda: without("iss")), 401, "missing_claim"),
        case("aud-wrong", ok(lambda: signed(aud="another-service")), 401, "audience"),
        case("aud-integer", ok(lambda: signed(aud=1)), 401, "audience"),
        case("aud-list-without-ours", ok(lambda: signed(aud=["a", "b"])), 401, "audience"),
        case("aud-prefix-of-ours", ok(lambda: signed(aud=AUDIENCE[:-1])), 401, "audience"),
        case("sub-number", ok(lambda: signed(sub=42)), 401, "invalid_sub"),
        case("sub-object", ok(lambda: signed(sub={"id": "user-1"})), 401, "invalid_sub"),
        # The tenant claim: exact, case-sensitive string equality, or a list of strings holding it.
        *(
            case(
                f"tenant-{name}",
                ok(lambda v=value: signed(organization_id=v)),
                403,
                "tenant_mismatch",
            )
            for name, value in [
                ("number", 123),
                ("list-of-numbers", [123]),
                ("empty", ""),
                ("null", None),
                ("object", {"id": "org-123"}),
                ("different-case", "ORG-123"),
                ("trailing-space", "org-123 "),
                ("fullwidth", FULLWIDTH_ORG_123),
                ("list-with-a-number", ["org-123", 1]),
                ("empty-list", []),
            ]
        ),
        case("tenant-missing", ok(lambda: without("organization_id")), 403, "tenant_mismatch"),
    ]


@pytest.fixture
def catalogue_settings(jwks_settings):
    """HS and JWKS keys, issuer and audience, a one-hour maximum lifetime, no refetch cooldown."""
    return replace(jwks_settings, jwt_max_age=3600, jwt_jwks_cooldown=0.0)


@pytest.mark.parametrize(("build", "status", "reason"), _cases())
async def test_bad_input_catalogue(
    make_client, catalogue_settings, jwks, db, build, status, reason
):
    """Each hostile token gets its status and code, one audit row with the reason, no fetch."""
    client = await make_client(catalogue_settings)
    fetches = jwks.fetches
    values = build(jwks)
    headers = CIMultiDict([("Content-Type", "application/json")])
    for value in values:
        headers.add("Authorization", value)
    resp = await client.post(V1, json=BODY, headers=headers)
    data = await resp.json()
    code, event = CODES[status]
    assert (resp.status, data["error"]["code"]) == (status, code), data
    assert "token" not in data
    if status == 401:
        assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    rows = await audit_rows(db, resp.headers["X-Request-ID"])
    assert len(rows) == 1
    row = rows[0]
    assert (row["event"], row["status"]) == (event, status)
    assert json.loads(row["detail"]) == {"reason": reason, "code": code}
    assert row["token_sha256"] is None
    recorded = " ".join(str(v) for v in row.values())
    for value in values:
        token = value.partition(" ")[2]
        assert len(token) < 8 or token not in recorded
    # Only an unknown kid may refetch the key set; nothing ever fetches a key the token names.
    assert jwks.fetches == fetches + (1 if reason == "unknown_kid" else 0)
    assert jwks.trap_hits == 0


def _good_tokens() -> list[Any]:
    k = test_keys()
    return [
        pytest.param(good_hs, id="hs256"),
        pytest.param(lambda: k.rsa.sign(claims()), id="rs256"),
        pytest.param(lambda: k.ec.sign(claims()), id="es256"),
        pytest.param(lambda: k.ed.sign(claims()), id="eddsa"),
        pytest.param(
            lambda: hs_token(HS, claims(aud=["other", AUDIENCE])), id="aud-list-with-ours"
        ),
        pytest.param(
            lambda: hs_token(HS, claims(nbf=int(time.time()) + 20)), id="nbf-within-leeway"
        ),
        pytest.param(
            lambda: hs_token(HS, claims(organization_id=["org-9", "org-123"])), id="tenant-list"
        ),
        pytest.param(lambda: hs_token(HS, claims(sub=None)), id="no-sub"),
    ]


@pytest.mark.parametrize("make_token", _good_tokens())
async def test_good_tokens_pass(make_client, catalogue_settings, jwks, db, make_token):
    """The same app accepts well-formed tokens of every family it trusts, with no extra fetch."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    client = await make_client(catalogue_settings)
    fetches = jwks.fetches
    resp = await client.post(V1, json=BODY, headers={"Authorization": f"Bearer {make_token()}"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["dashboard_id"] == "dashboard-789"
    assert jwks.fetches == fetches


# Random input: whatever arrives, the answer is one of the contract's, never a 500, never a token.

ALLOWED = {
    200: None,
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "dashboard_not_found",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x24F, exclude_categories=("Cc", "Cs")),
    max_size=200,
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
_CLAIMS = st.sampled_from(["exp", "nbf", "iat", "sub", "organization_id", "jti", "aud", "x"])
_HEADERS = st.sampled_from(["alg", "kid", "typ", "crit", "jku", "b64", "x"])


def _plain_claims() -> dict[str, Any]:
    """Claims the default test settings (no issuer or audience) accept."""
    now = int(time.time())
    return {"sub": "user-1", "organization_id": "org-123", "iat": now, "exp": now + 600}


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


_IDS = st.sampled_from(["org-123", "org-999", "ORG-123", "workspace-456", "ws-1"])
# (Authorization value or None, signed with the real secret?)
_UNTRUSTED = st.one_of(
    st.none(),
    _TEXT,
    _TEXT.map("Bearer {}".format),
    st.lists(st.binary(max_size=80), min_size=1, max_size=5).map(
        lambda parts: "Bearer " + ".".join(b64(p) for p in parts)
    ),
    st.tuples(_JSON, _JSON).map(
        lambda hp: (
            "Bearer "
            + hs_token(_json_bytes(hp[0]), _json_bytes(hp[1]), secret=b"not-the-secret" * 4)
        )
    ),
).map(lambda value: (value, False))
_TRUSTED = st.one_of(
    st.builds(lambda: hs_token(HS, _plain_claims())),
    (_JSON | _IDS).map(lambda tenant: hs_token(HS, {**_plain_claims(), "organization_id": tenant})),
    st.dictionaries(_CLAIMS, _JSON, max_size=3).map(
        lambda extra: hs_token(HS, {**_plain_claims(), **extra})
    ),
    st.dictionaries(_HEADERS, _JSON, max_size=2).map(
        lambda extra: hs_token({**HS, **extra}, _plain_claims())
    ),
).map(lambda token: (f"Bearer {token}", True))
_BODIES = st.one_of(
    st.just(_json_bytes(BODY)),
    st.fixed_dictionaries({"tenant_id": _IDS, "workspace_id": _IDS}).map(_json_bytes),
    st.binary(max_size=300),
    _JSON.map(_json_bytes),
    st.fixed_dictionaries(
        {"tenant_id": _JSON | _TEXT, "workspace_id": st.just("workspace-456") | _TEXT}
    ).map(_json_bytes),
)
# application/json most of the time, so that bodies get read at all.
_MEDIA_TYPES = st.sampled_from(
    [
        *["application/json"] * 4,
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-json",
    ]
)


@pytest.fixture
async def mapped(db):
    """The demo tenant's dashboard, so a good token and body would get a token."""
    await add_mapping(db, "org-123", "workspace-456", "dashboard-789", is_default=True)
    return db


@hypothesis.settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@hypothesis.given(auth=st.one_of(_UNTRUSTED, _TRUSTED), body=_BODIES, media_type=_MEDIA_TYPES)
async def test_random_input_gets_a_contract_answer(client, mapped, auth, body, media_type):
    """Random bytes and JSON in the header and body: a contract status, no 500, no stray token."""
    value, trusted = auth
    headers = {"Content-Type": media_type}
    if value is not None:
        headers["Authorization"] = value
    resp = await client.post(V1, data=body, headers=headers)
    assert resp.status in ALLOWED, await resp.text()
    hypothesis.event(f"status {resp.status}")
    data = await resp.json()
    if resp.status == 200:
        assert trusted, value
        return
    assert "token" not in data
    assert data["error"]["code"] == ALLOWED[resp.status]

"""Strict compact-JWS reading: size, segments, base64url and JSON, before any key is touched."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth.jws import MAX_TOKEN_CHARS, b64url_segment, json_object, parse_compact
from gateway.errors import Unauthenticated
from tests.jwks_server import b64


def reason_of(call, *args) -> str:
    with pytest.raises(Unauthenticated) as err:
        call(*args)
    return err.value.reason


def test_parse_returns_header_and_claims() -> None:
    """A well-formed token gives its header and claims as dicts."""
    jws = parse_compact(f"{b64({'alg': 'HS256'})}.{b64({'sub': 'a', 'n': 10**30})}.c2ln")
    assert jws.header == {"alg": "HS256"}
    assert jws.claims == {"sub": "a", "n": 10**30}


def test_a_repeated_header_is_read_the_same_and_never_shared() -> None:
    """The same header segment parsed again (cached) gives an equal header of its own; a header
    refused once is refused again."""
    head = b64({"alg": "HS256", "typ": "JWT"})
    first = parse_compact(f"{head}.{b64({'sub': 'a'})}.c2ln")
    first.header["alg"] = "none"
    again = parse_compact(f"{head}.{b64({'sub': 'b'})}.c2ln")
    assert again.header == {"alg": "HS256", "typ": "JWT"}
    duplicated = b64(b'{"alg":"HS256","alg":"none"}')
    for _ in range(2):
        assert reason_of(parse_compact, f"{duplicated}.{b64({'sub': 'a'})}.c2ln") == (
            "duplicate_member"
        )


def token_of_length(length: int) -> str:
    """A well-formed token of exactly this many characters."""
    head = b64({"alg": "HS256"})
    for sig_bytes in range(30, 34):
        for filler in range(5900, 6300):
            token = f"{head}.{b64({'p': 'x' * filler})}.{b64(b's' * sig_bytes)}"
            if len(token) == length:
                return token
    raise AssertionError(length)


def test_size_limit_is_exactly_8_kib() -> None:
    """8,192 characters are read; 8,193 are refused before anything else."""
    assert parse_compact(token_of_length(MAX_TOKEN_CHARS)).header == {"alg": "HS256"}
    assert reason_of(parse_compact, token_of_length(MAX_TOKEN_CHARS + 1)) == "token_too_large"
    assert reason_of(parse_compact, "!" * (MAX_TOKEN_CHARS + 1)) == "token_too_large"


@pytest.mark.parametrize(
    ("segment", "decoded"),
    [
        ("eyJhIjoxfQ", b'{"a":1}'),
        ("_-8", b"\xff\xef"),  # the URL-safe alphabet's two extra characters
        ("eyJhIjoxfQ==", None),  # padding
        ("eyJhIjoxfQ=", None),
        ("eyJh+joxfQ", None),  # standard alphabet
        ("eyJh IjoxfQ", None),  # whitespace
        ("eyJhIjoxfR", None),  # non-zero spare bits: a second spelling of the same bytes
        ("e", None),  # a length no base64 has
        ("", b""),
    ],
)
def test_b64url_segment_is_unpadded_and_canonical(segment: str, decoded: bytes | None) -> None:
    """Only the one canonical unpadded base64url spelling of some bytes is accepted, as them."""
    if decoded is not None:
        assert b64url_segment(segment, "header") == decoded
    else:
        assert reason_of(b64url_segment, segment, "header") == "malformed"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"a":1,"a":1}', "duplicate_member"),
        (b'{"a":{"b":1,"b":2}}', "duplicate_member"),
        (b'{"a":1,"\\u0061":2}', "duplicate_member"),
        (b"[1]", "not_an_object"),
        (b"null", "not_an_object"),
        (b'{"a":NaN}', "invalid_json"),
        (b'{"a":1e400}', "invalid_json"),
        (b'{"a":"\\ud800"}', "invalid_json"),
        (b'\xef\xbb\xbf{"a":1}', "invalid_json"),
        (b'{"a":"\xff"}', "invalid_json"),
        (b"{'a':1}", "invalid_json"),
        (b'{"a":1} x', "invalid_json"),
        (b'{"a":' + b"[" * 3000 + b"]" * 3000 + b"}", "invalid_json"),
    ],
)
def test_json_object_is_strict(data: bytes, reason: str) -> None:
    """Duplicates at any depth, non-objects and anything beyond RFC 8259 are refused."""
    assert reason_of(json_object, data, "payload") == reason


def test_moderate_nesting_and_unicode_are_fine() -> None:
    """Legitimate JSON (some nesting, non-ASCII text, escapes) parses."""
    data = '{"a":' + "[" * 200 + "]" * 200 + ',"t":"ｏｒｇ \\u00e9"}'  # noqa: RUF001
    assert json_object(data.encode(), "payload")["t"] == "ｏｒｇ é"  # noqa: RUF001


@pytest.mark.parametrize(
    "token",
    ["a", "a.b", "a.b.c.d", "a.b.c.d.e", ".b.c", "a..c", "..", ""],
)
def test_segment_count_and_emptiness(token: str) -> None:
    """Exactly three segments, the first two non-empty."""
    assert reason_of(parse_compact, token) == "malformed"


def test_empty_signature_segment_is_left_to_the_algorithm_check() -> None:
    """An `alg: none` token parses; it is the verifier that refuses it, by its own reason."""
    jws = parse_compact(f"{b64({'alg': 'none'})}.{b64({'exp': 1})}.")
    assert jws.header == {"alg": "none"}


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(st.text(alphabet=_ALPHABET, max_size=12).filter(lambda t: len(t) % 4 != 1))
def test_a_segment_is_accepted_exactly_when_it_is_the_spelling_of_its_bytes(segment: str) -> None:
    """The last-character test accepts the same segments as decoding, encoding back and
    comparing: the one spelling of the bytes, and no other."""
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    canonical = base64.urlsafe_b64encode(data).rstrip(b"=").decode() == segment
    if canonical:
        assert b64url_segment(segment, "payload") == data
    else:
        assert reason_of(b64url_segment, segment, "payload") == "malformed"


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(), _JSON_VALUES, max_size=5), st.booleans())
def test_json_object_reads_what_the_standard_parser_reads(value: dict, compact: bool) -> None:
    """Compact or spaced, ASCII-escaped or not, big integers included: the object read is the
    standard parser's, whether or not orjson's own round trip vouched for the text."""
    text = json.dumps(value, separators=(",", ":") if compact else None, ensure_ascii=not compact)
    assert json_object(text.encode(), "payload") == json.loads(text)


def test_a_compact_duplicate_is_refused_though_orjson_reads_it() -> None:
    """The shortest duplicate, which orjson reads as one member, is still refused."""
    assert reason_of(json_object, b'{"a":1,"a":2}', "payload") == "duplicate_member"
    assert reason_of(json_object, b'{"b":{"a":1,"a":1}}', "payload") == "duplicate_member"

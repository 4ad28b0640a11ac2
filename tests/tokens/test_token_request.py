"""Request body parsing: aliases, the id rule, and the errors callers see."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRequest, UnsupportedMediaType
from gateway.tokens.request import check_media_type, parse_token_request


def test_snake_and_camel_case_bodies_parse_alike() -> None:
    """tenantId/workspaceId/dashboardId are aliases of the snake_case names."""
    snake = parse_token_request(b'{"tenant_id":"t1","workspace_id":"w1","dashboard_id":"d1"}')
    camel = parse_token_request(b'{"tenantId":"t1","workspaceId":"w1","dashboardId":"d1"}')
    assert snake == camel
    assert snake.dashboard_id == "d1"


def test_unknown_fields_are_ignored_and_dashboard_is_optional() -> None:
    """Extra members do not matter; without dashboard_id it is None."""
    req = parse_token_request(b'{"tenant_id":"t1","workspace_id":"w1","extra":[1,2]}')
    assert req.dashboard_id is None


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"[1,2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b'{"workspace_id":"w"}', "tenant_id is required"),
        (b'{"tenant_id":"t"}', "workspace_id is required"),
        (b'{"tenant_id":5,"workspace_id":"w"}', "tenant_id must be a string"),
        (b'{"tenant_id":"","workspace_id":"w"}', "tenant_id must be"),
        (b'{"tenant_id":"-t","workspace_id":"w"}', "tenant_id must be"),
        (b'{"tenant_id":"t t","workspace_id":"w"}', "tenant_id must be"),
        (b'{"tenant_id":"t\\n","workspace_id":"w"}', "tenant_id must be"),
        (b'{"tenant_id":"' + b"a" * 129 + b'","workspace_id":"w"}', "tenant_id must be"),
        (b'{"tenant_id":"t","workspace_id":"w","dashboard_id":7}', "dashboard_id must be"),
        (b'{"tenant_id":"t","tenantId":"u","workspace_id":"w"}', "disagree"),
    ],
)
def test_bad_bodies_are_invalid_requests(body: bytes, fragment: str) -> None:
    """Each malformed body raises InvalidRequest with a message naming the problem."""
    with pytest.raises(InvalidRequest, match=fragment):
        parse_token_request(body)


def test_id_rule_accepts_its_full_alphabet_and_length() -> None:
    """128 characters from the allowed set pass."""
    tenant = "A" + "z9._:@-" * 18 + "x"
    assert len(tenant) == 128
    assert parse_token_request(f'{{"tenant_id":"{tenant}","workspace_id":"w"}}'.encode()).tenant_id


@pytest.mark.parametrize(
    "ctype", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_media_types_are_accepted(ctype: str) -> None:
    """application/json with or without parameters, any case."""
    check_media_type(ctype)


@pytest.mark.parametrize(
    "ctype", ["", "text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
def test_other_media_types_are_refused(ctype: str) -> None:
    """Anything else is 415."""
    with pytest.raises(UnsupportedMediaType):
        check_media_type(ctype)

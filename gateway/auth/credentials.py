"""Where the caller's JWT comes from: the `Authorization` header, or the product's session cookie.

A browser attaches a cookie to cross-site requests too, so a JWT read from the cookie is only
trusted on a request the browser says came from the gateway's own origin or an allowed one
(`check_same_site`); a header is never attached by a browser on its own, so it needs no check.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.auth.verifier import bearer_token
from gateway.errors import Forbidden


@dataclass(frozen=True, slots=True)
class Credential:
    """The caller's JWT and whether it came from the session cookie."""

    token: str
    from_cookie: bool = False


def read_credential(
    authorization: Sequence[str], cookies: Mapping[str, str], cookie_name: str | None
) -> Credential:
    """The JWT from `Authorization` (which wins), else from the cookie when one is configured.

    Unauthenticated (as `bearer_token` raises it) when neither holds one.
    """
    if not authorization and cookie_name is not None:
        token = cookies.get(cookie_name)
        if token:
            return Credential(token=token, from_cookie=True)
    return Credential(token=bearer_token(authorization))


def _origin_of(url: str) -> tuple[str, str] | None:
    """(scheme, host[:port]) of an absolute http(s) URL, lower-cased; None for anything else."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    return scheme, parts.netloc.lower()


def _default_port(scheme: str, netloc: str) -> str:
    # "https://app:443" and "https://app" are one origin.
    suffix = ":443" if scheme == "https" else ":80"
    return netloc[: -len(suffix)] if netloc.endswith(suffix) else netloc


def _same_origin(origin: tuple[str, str], host: str, scheme: str) -> bool:
    o_scheme, o_netloc = origin
    if _default_port(o_scheme, o_netloc) != _default_port(o_scheme, host.lower()):
        return False
    # Behind a TLS-terminating proxy the gateway sees http while the page is https: an https
    # page on our host is ours either way; an http one only when the request itself is http.
    return o_scheme in ("https", scheme)


def check_same_site(
    *,
    origin: str | None,
    referer: str | None,
    sec_fetch_site: str | None,
    host: str,
    scheme: str,
    allowed_origins: Collection[str],
) -> None:
    """Forbidden (reason `cross_site`) unless a cookie-authenticated request is from us or a friend.

    Judged by `Origin`, else by the origin of `Referer`. With neither, the caller is taken for a
    non-browser client (curl, a backend) and allowed, unless it sends `Sec-Fetch-Site`, which
    only browsers send: then it must say `same-origin`.
    """
    source = origin if origin is not None else referer
    if source is None:
        if sec_fetch_site is None or sec_fetch_site == "same-origin":
            return
        raise Forbidden("cookie-authenticated request from another site", reason="cross_site")
    parsed = _origin_of(source)
    if parsed is not None:
        if _same_origin(parsed, host, scheme):
            return
        if f"{parsed[0]}://{parsed[1]}" in {o.lower() for o in allowed_origins}:
            return
    # "null" (a sandboxed frame, a file: page) and unknown origins land here.
    raise Forbidden("cookie-authenticated request from another site", reason="cross_site")

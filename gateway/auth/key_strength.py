"""Weak JWKS keys, refused at load: RSA under 2,048 bits or with a known-weak modulus (ROCA,
close primes, small factors), and EC points off their curve.

The RSA modulus checks come from `badkeys` (maintained, and it carries the published ROCA
fingerprint test), rather than a hand-written copy of that test.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

MIN_RSA_BITS = 2048  # RFC 7518 section 3.3
# badkeys' checks that need only the public modulus and no downloaded data.
RSA_CHECKS = ("roca", "fermat", "smallfactors", "rsainvalid")
_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
    "secp256k1": ec.SECP256K1(),
}


def _uint(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None
    return int.from_bytes(raw, "big") if raw else None


def key_weakness(jwk: Mapping[str, Any]) -> str | None:
    """Why this JWK is too weak to trust, or None (malformed keys are left to the JWK parser)."""
    kty = jwk.get("kty")
    if kty == "RSA":
        n, e = _uint(jwk.get("n")), _uint(jwk.get("e"))
        if n is None or e is None:
            return None
        if n.bit_length() < MIN_RSA_BITS:
            return f"RSA modulus of {n.bit_length()} bits, under {MIN_RSA_BITS}"
        # Imported here: badkeys loads pyOpenSSL (about 0.1 s), paid only by a JWKS with RSA keys.
        from badkeys.checks import checkrsa  # noqa: PLC0415

        found = checkrsa(n, e=e, checks=RSA_CHECKS)
        return f"RSA modulus fails the {', '.join(sorted(found))} check" if found else None
    if kty == "EC":
        curve = _CURVES.get(str(jwk.get("crv")))
        x, y = _uint(jwk.get("x")), _uint(jwk.get("y"))
        if curve is None or x is None or y is None:
            return None
        try:
            ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
        except ValueError:
            return f"EC point not on {jwk.get('crv')}"
    return None

"""Weak JWKS keys are refused at load, each with a warning naming its kid: RSA under 2,048 bits,
a ROCA-fingerprinted modulus, and an EC point off its curve; strong keys still load."""

from __future__ import annotations

import base64
import logging
import secrets

import gmpy2
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.auth.jwks import keys_from_jwks
from gateway.auth.key_strength import key_weakness
from tests.jwks_server import TestKey, test_keys

ALGS = ("RS256", "ES256")


def _b64(n: int) -> str:
    return (
        base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
    )


def _roca_prime(bits: int) -> int:
    """A prime of the vulnerable library's form k*M + (65537^a mod M) (Nemec et al., CCS 2017)."""
    m = 1
    p = 2
    for _ in range(39):  # M: the primorial of the first 39 primes, as for 512-bit primes
        m *= p
        p = int(gmpy2.next_prime(p))
    while True:
        k = secrets.randbits(bits - m.bit_length())
        a = secrets.randbelow(2**20)
        candidate = k * m + pow(65537, a, m)
        if candidate.bit_length() == bits and gmpy2.is_prime(candidate):
            return candidate


def _rsa_jwk(kid: str, n: int) -> dict[str, str]:
    return {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": _b64(n), "e": "AQAB"}


def test_roca_modulus_is_refused_with_its_kid(caplog) -> None:
    """A 2,048-bit modulus with the ROCA structure is refused (Wycheproof expects it), and the
    warning names the kid; a good RSA key beside it still loads."""
    n = _roca_prime(1024) * _roca_prime(1024)
    assert n.bit_length() >= 2047
    good = test_keys().rsa
    caplog.set_level(logging.INFO, logger="gateway.auth.jwks")
    keys = keys_from_jwks({"keys": [_rsa_jwk("roca-1", n), good.jwk()]}, ALGS)
    assert "roca-1" not in keys.table
    assert good.kid in keys.table
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "roca-1" in warning.getMessage()
    assert "roca" in warning.getMessage()


def test_short_rsa_key_is_refused_with_a_warning(caplog) -> None:
    """RSA under 2,048 bits: refused at load with a warning naming the kid and the size."""
    weak = rsa.generate_private_key(65537, 1024)  # noqa: S505 - the weak key is the point
    caplog.set_level(logging.WARNING, logger="gateway.auth.jwks")
    keys = keys_from_jwks(
        {"keys": [TestKey("short", "RS256", weak).jwk(), test_keys().ec.jwk()]}, ALGS
    )
    assert "short" not in keys.table
    (warning,) = caplog.records
    assert "'short'" in warning.getMessage()
    assert "1024 bits" in warning.getMessage()


def test_ec_point_off_its_curve_is_refused(caplog) -> None:
    """An EC key whose (x, y) is not on P-256 is refused with a warning naming its kid."""
    good = test_keys().ec
    jwk = dict(good.jwk(), kid="off-curve")
    y = int.from_bytes(base64.urlsafe_b64decode(jwk["y"] + "=="), "big")
    jwk["y"] = _b64(y ^ 1)
    caplog.set_level(logging.WARNING, logger="gateway.auth.jwks")
    keys = keys_from_jwks({"keys": [jwk, good.jwk()]}, ALGS)
    assert "off-curve" not in keys.table
    (warning,) = caplog.records
    assert "'off-curve'" in warning.getMessage()
    assert "not on P-256" in warning.getMessage()


def test_strong_keys_pass() -> None:
    """Freshly generated 2,048-bit RSA and P-256 keys have no weakness."""
    strong_rsa = rsa.generate_private_key(65537, 2048)
    strong_ec = ec.generate_private_key(ec.SECP256R1())
    assert key_weakness(TestKey("r", "RS256", strong_rsa).jwk()) is None
    assert key_weakness(TestKey("e", "ES256", strong_ec).jwk()) is None

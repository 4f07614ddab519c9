"""RSA keys for moto, made once per test process instead of once per certificate.

moto's IoT makes a 2048-bit RSA key pair for every CreateKeysAndCertificate (each camera's
registration), and moto's KMS one for every key, symmetric ones too: ~50 ms of CPU each, ~7 s of
the suite's (measured with py-spy, 2026-12-03). Here the two moto modules draw from a few keys per
size made on first use, in turn. Only the fake AWS changes: each certificate is still built and
signed anew (its serial number is random, so its id and PEM differ), and a key pair still matches
its certificate; nothing in the project makes keys of its own.
"""

from __future__ import annotations

import itertools
import types

from cryptography.hazmat.primitives.asymmetric import rsa

KEYS_PER_SIZE = 4
_MOTO_MODULES_MAKING_KEYS = ("moto.iot.models", "moto.kms.utils")


def _pooled_rsa() -> types.ModuleType:
    """cryptography's rsa module, whose generate_private_key hands out pooled keys."""
    pooled = types.ModuleType(f"{rsa.__name__} (pooled for moto)")
    pooled.__dict__.update({k: v for k, v in vars(rsa).items() if not k.startswith("__")})
    made: dict[tuple[int, int], list] = {}
    turn = itertools.count()

    def generate_private_key(public_exponent: int, key_size: int, backend=None):
        keys = made.setdefault((public_exponent, key_size), [])
        index = next(turn) % KEYS_PER_SIZE
        while len(keys) <= index:
            keys.append(rsa.generate_private_key(public_exponent, key_size))
        return keys[index]

    pooled.generate_private_key = generate_private_key
    return pooled


def pool_moto_keys() -> None:
    """Point moto's key-making modules at the pool (idempotent)."""
    import importlib

    pooled = _pooled_rsa()
    for name in _MOTO_MODULES_MAKING_KEYS:
        module = importlib.import_module(name)
        if getattr(module, "rsa", None) is rsa:
            module.rsa = pooled

"""moto's pooled RSA keys (tests/moto_keys.py) keep the fake IoT faithful where the project
looks: every registration still gets its own certificate, whose key pair matches it."""

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import awsclients as aws


def pem(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_each_certificate_is_its_own_and_matches_its_key_pair(moto_aws):
    iot = aws.client("iot")
    made = [iot.create_keys_and_certificate(setAsActive=True) for _ in range(6)]
    assert len({m["certificateId"] for m in made}) == 6
    assert len({m["certificatePem"] for m in made}) == 6
    for m in made:
        cert = x509.load_pem_x509_certificate(m["certificatePem"].encode())
        key = serialization.load_pem_private_key(m["keyPair"]["PrivateKey"].encode(), None)
        assert pem(cert.public_key()) == pem(key.public_key())
        assert m["keyPair"]["PublicKey"].encode() == pem(key.public_key())

"""Test PKI: a throwaway CA, server certificates for 127.0.0.1 and client certificates (mTLS).

Made with ``cryptography``; files are PEM, keys unencrypted, valid for one day.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertFiles:
    """PEM ``cert`` and ``key`` paths plus the loaded objects."""

    cert: Path
    key: Path
    certificate: x509.Certificate
    private_key: object


def _write(dir_: Path, name: str, cert: x509.Certificate, key) -> CertFiles:
    dir_.mkdir(parents=True, exist_ok=True)
    cp, kp = dir_ / f"{name}.crt", dir_ / f"{name}.key"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    kp.chmod(0o600)
    return CertFiles(cp, kp, cert, key)


def _validity(b: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return b.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))


def make_ca(dir_: Path, name: str = "test-ca", rsa_key: bool = False) -> CertFiles:
    """A self-signed CA certificate (EC P-256, or RSA 2048 when ``rsa_key``)."""
    key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                      content_commitment=False, key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    cert = _validity(b).sign(key, hashes.SHA256())
    return _write(dir_, name, cert, key)


def issue_cert(ca: CertFiles, dir_: Path, name: str, client: bool = False,
               ips: tuple[str, ...] = ("127.0.0.1",), dns: tuple[str, ...] = ("localhost",)) -> CertFiles:
    """A leaf certificate signed by ``ca``: server auth for ``ips``/``dns``, or client auth."""
    key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .issuer_name(ca.certificate.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                               else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    if not client:
        sans = [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + [x509.DNSName(d) for d in dns]
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = _validity(b).sign(ca.private_key, hashes.SHA256())
    return _write(dir_, name, cert, key)

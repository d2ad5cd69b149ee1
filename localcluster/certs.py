"""Certificates for the local cluster, made with ``openssl``: the apiserver's PKI (``cluster.py``)
and the brokers' TLS (``brokers.py``); tests use it to make a second, wrong CA."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_ca(d: Path, cn: str, name: str = "ca") -> None:
    """``<name>.crt`` and ``<name>.key`` in ``d``: a self-signed CA, valid ten years."""
    d.mkdir(parents=True, exist_ok=True)
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", f"/CN={cn}",
        "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.crt"),
    )  # fmt: skip
    (d / f"{name}.key").chmod(0o600)


def issue(d: Path, name: str, cn: str, ext: str, ca: str = "ca") -> None:
    """``<name>.crt`` / ``<name>.key`` in ``d``, signed by the CA ``<ca>.crt`` / ``<ca>.key`` there.

    ``ext``: the certificate's extensions as openssl ``-extfile`` text (subjectAltName,
    extendedKeyUsage).
    """
    (d / f"{name}.ext").write_text(ext)
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
        "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / f"{ca}.crt"),
        "-CAkey", str(d / f"{ca}.key"), "-CAcreateserial", "-days", "3650",
        "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.crt"),
    )  # fmt: skip
    (d / f"{name}.key").chmod(0o600)

"""The secure stack's certificates and login: a CA of its own, made with ``openssl``.

``tls/`` in the state dir holds::

    ca.pem, ca.key              the stack's CA (clients trust ca.pem)
    broker.pem                  the brokers' key and certificate chain (Kafka's PEM keystore)
    redis.crt, redis.key        Redis' certificate and key
    client.crt, client.key      a client certificate for the mutual-TLS listener
    login.json                  the SCRAM user and its random password (mode 0600)

Certificates name ``127.0.0.1`` and ``localhost``, so hostname verification stays on.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from trackflow.streams.stack.config import SASL_USER, SecureInfo, StackError
from trackflow.streams.stack.prerequisites import ensure_command
from trackflow.streams.stack.processes import run_quietly

DAYS = "825"
SUBJECT_ALT_NAMES = "subjectAltName=IP:127.0.0.1,DNS:localhost"


def _openssl() -> str:
    return ensure_command("openssl", "openssl", "`sudo apt-get install -y openssl` (Debian/Ubuntu) "
                          "or `brew install openssl` (macOS).")


def _issue(openssl: str, tls: Path, name: str) -> tuple[Path, Path]:
    """A key and a CA-signed certificate for ``name``; returns (cert, key)."""
    key, csr, cert, ext = (tls / f"{name}.key", tls / f"{name}.csr", tls / f"{name}.crt",
                           tls / f"{name}.ext")
    run_quietly([openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                 "-out", str(key)], f"creating the {name} key")
    run_quietly([openssl, "req", "-new", "-key", str(key), "-subj", f"/CN=trackflow-{name}",
                 "-out", str(csr)], f"creating the {name} certificate request")
    ext.write_text(SUBJECT_ALT_NAMES + "\n")
    run_quietly([openssl, "x509", "-req", "-in", str(csr), "-CA", str(tls / "ca.pem"),
                 "-CAkey", str(tls / "ca.key"), "-CAcreateserial", "-days", DAYS, "-sha256",
                 "-extfile", str(ext), "-out", str(cert)], f"signing the {name} certificate")
    csr.unlink()
    ext.unlink()
    return cert, key


def _secure_info(tls: Path, username: str, password: str) -> SecureInfo:
    return SecureInfo(tls / "ca.pem", username, password,
                      cert_file=tls / "client.crt", key_file=tls / "client.key")


def ensure_tls(state_dir: Path) -> SecureInfo:
    """The stack's CA, certificates and SCRAM login, created on first use and kept after."""
    tls = state_dir / "tls"
    login_file = tls / "login.json"
    if login_file.is_file() and (tls / "broker.pem").is_file() and (tls / "redis.crt").is_file():
        try:
            login = json.loads(login_file.read_text())
            username, password = str(login["username"]), str(login["password"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StackError(f"{login_file} is unreadable ({type(exc).__name__}); "
                             "run `trackflow stack down --purge` and start again") from None
        if not (tls / "client.crt").is_file() or not (tls / "client.key").is_file():
            # A stack made before the mutual-TLS listener: same CA and login, a client cert more.
            _issue(_openssl(), tls, "client")
        return _secure_info(tls, username, password)
    openssl = _openssl()
    tls.mkdir(parents=True, exist_ok=True)
    os.chmod(tls, 0o700)
    run_quietly([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", DAYS,
                 "-sha256", "-subj", "/CN=trackflow local stack CA",
                 "-keyout", str(tls / "ca.key"), "-out", str(tls / "ca.pem")],
                "creating the stack's CA")
    cert, key = _issue(openssl, tls, "broker")
    # Kafka's PEM keystore: the PKCS#8 key, then the chain.
    (tls / "broker.pem").write_text(key.read_text() + cert.read_text()
                                    + (tls / "ca.pem").read_text())
    _issue(openssl, tls, "redis")
    _issue(openssl, tls, "client")
    password = secrets.token_urlsafe(24)
    fd = os.open(login_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"username": SASL_USER, "password": password}, fh)
    return _secure_info(tls, SASL_USER, password)

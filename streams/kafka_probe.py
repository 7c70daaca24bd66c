"""Why a Kafka client could not start, when the reason is its security settings.

aiokafka's bootstrap logs the real cause (a refused login, a certificate that did not verify)
and raises a bare "Unable to bootstrap". One direct connection to the first bootstrap address,
with the same security, gets the cause back, so start-up can name the setting to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from trackflow.providers.errors import ConfigError
from trackflow.streams.kafka_security import PASSWORD_VAR, USERNAME_VAR, client_security
from trackflow.streams.settings import KafkaSettings

log = logging.getLogger("trackflow.streams.kafka")

_VAR = "TRACKFLOW_KAFKA__SECURITY__"
#: TLS alerts a broker sends when it wants a client certificate it did not get or cannot verify
#: (Java sends bad_certificate for a missing one; TLS 1.3 defines certificate_required)
_CERT_ALERTS = ("BAD_CERTIFICATE", "CERTIFICATE_REQUIRED", "CERTIFICATE_UNKNOWN", "UNKNOWN_CA",
                "UNSUPPORTED_CERTIFICATE", "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED")
#: an ApiVersions v0 request (correlation id 1, client id "probe"): the broker answers it
#: before any login, so a TLS alert in its place is about the certificate
_API_VERSIONS = struct.pack(">hhih", 18, 0, 1, 5) + b"probe"


def _host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip().removeprefix("kafka://")
    host, _, port = first.rpartition(":")
    return host.strip("[]") or "localhost", int(port or 9092)


async def security_problem(kafka: KafkaSettings, timeout_s: float = 10.0) -> str | None:
    """A sentence naming the security setting that made the first broker refuse us, or None
    when the failure is not about security (nothing answers: the address is the problem)."""
    sec = kafka.security
    try:
        host, port = _host_port(kafka.bootstrap_servers)
        kwargs = client_security(sec).aiokafka_kwargs()
    except (ValueError, ConfigError) as exc:
        return str(exc)
    try:
        conn = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **kwargs), timeout_s)
    except (SaslAuthenticationFailed, AuthenticationFailedError, IllegalSaslStateError):
        return (f"the broker refused the SASL login ({sec.sasl_mechanism}) of the user in "
                f"{USERNAME_VAR}: check {PASSWORD_VAR} and {USERNAME_VAR}, and "
                f"kafka.security.sasl_mechanism ({_VAR}SASL_MECHANISM)")
    except UnsupportedSaslMechanismError:
        return (f"the broker does not accept SASL mechanism {sec.sasl_mechanism}: set "
                f"kafka.security.sasl_mechanism ({_VAR}SASL_MECHANISM) to one it enables")
    except ssl.SSLCertVerificationError as exc:
        if "hostname" in str(exc.verify_message or exc).lower():
            return (f"the broker's certificate does not name {host} ({exc.verify_message}): "
                    "connect by a name it holds, or turn off kafka.security.check_hostname "
                    f"({_VAR}CHECK_HOSTNAME=false) for a test cluster")
        return (f"the broker's certificate did not verify ({exc.verify_message}): set "
                f"kafka.security.ca_file ({_VAR}CA_FILE) to the CA that signed it")
    except ssl.SSLError as exc:
        if _is_cert_alert(exc):
            return _certificate_refused(kafka, exc)
        return (f"the TLS handshake failed ({exc.reason}): check that kafka.security.protocol "
                f"({_VAR}PROTOCOL={sec.protocol}) matches the broker's listener")
    except (ConnectionRefusedError, TimeoutError, OSError, KafkaError) as exc:
        if sec.protocol == "PLAINTEXT" or isinstance(exc, ConnectionRefusedError):
            return None
        if sec.uses_tls:
            # TLS 1.3: the client's side of the handshake completes before the broker checks
            # the client certificate; its refusal arrives as an alert on the first read, which
            # aiokafka reports as a closed connection.
            answer = await _first_read(host, port, kwargs["ssl_context"], timeout_s)
            if isinstance(answer, ssl.SSLError):
                return _certificate_refused(kafka, answer)
            if answer == _DROPPED and sec.cert_file is None:
                # The alert and the close race each other: the close can come first. A
                # broker answers ApiVersions before any login, so a connection it drops
                # after the handshake without an answer wanted what we did not send.
                return (f"the broker closed the TLS connection after the handshake without "
                        f"answering ({type(exc).__name__}): it most likely requires a client "
                        f"certificate (mutual TLS): set kafka.security.cert_file and "
                        f"kafka.security.key_file ({_VAR}CERT_FILE, {_VAR}KEY_FILE); or "
                        f"kafka.security.protocol ({_VAR}PROTOCOL={sec.protocol}) does not "
                        "match the broker's listener")
        # A TLS listener spoken to in plaintext, or the reverse, closes the connection.
        log.debug("event=kafka_probe_failed error=%s", type(exc).__name__)
        return (f"the broker closed the connection during the {sec.protocol} handshake "
                f"({type(exc).__name__}): check that kafka.security.protocol "
                f"({_VAR}PROTOCOL) matches the broker's listener")
    conn.close()
    return None


def _is_cert_alert(exc: ssl.SSLError) -> bool:
    return any(alert in str(exc.reason or exc).upper() for alert in _CERT_ALERTS)


def _certificate_refused(kafka: KafkaSettings, exc: ssl.SSLError) -> str:
    sec = kafka.security
    if sec.cert_file is None:
        return (f"the broker requires a client certificate (mutual TLS) and refused the "
                f"connection without one ({exc.reason}): set kafka.security.cert_file and "
                f"kafka.security.key_file ({_VAR}CERT_FILE, {_VAR}KEY_FILE) to a certificate "
                "signed by a CA the broker trusts")
    return (f"the broker refused the client certificate {sec.cert_file} ({exc.reason}): "
            f"kafka.security.cert_file ({_VAR}CERT_FILE) must hold a certificate signed by a "
            "CA the broker trusts")


_DROPPED = "dropped"
"""What :func:`_first_read` returns for a connection closed after the handshake unanswered."""


async def _first_read(host: str, port: int, context: ssl.SSLContext,
                      timeout_s: float) -> ssl.SSLError | str | None:
    """How a TLS listener answers a first request: the certificate alert it sent, _DROPPED
    when it closed the connection after the handshake without answering, None otherwise."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), timeout_s)
        writer.write(struct.pack(">i", len(_API_VERSIONS)) + _API_VERSIONS)
        await writer.drain()
        head = await asyncio.wait_for(reader.read(4), timeout_s)
        return _DROPPED if not head else None
    except ssl.SSLError as exc:
        return exc if _is_cert_alert(exc) else None
    except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
        return _DROPPED if writer is not None else None
    except (OSError, TimeoutError) as exc:
        log.debug("event=kafka_probe_tls_failed error=%s", type(exc).__name__)
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    return None

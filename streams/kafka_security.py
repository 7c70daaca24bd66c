"""Kafka client security in one place: ``[kafka.security]``, the SASL login included.

Every Kafka client trackflow builds — the Faust worker, the CLI's aiokafka producers, consumers
and admin clients, confluent-kafka in tests and benchmarks, the Python client API — gets its
security from :func:`client_security`, so a cluster that needs TLS and SASL is configured once::

    security = client_security(settings.kafka.security)
    AIOKafkaProducer(bootstrap_servers=..., **security.aiokafka_kwargs())
    faust.App(..., broker_credentials=security.faust_credentials())
    confluent_kafka.Producer({"bootstrap.servers": ..., **security.confluent_config()})

The username and password are read by the settings loader from the environment only, never
from a file (``streams.settings``), and never show in a repr, a log line or an exception message
(``tests/unit/test_no_secrets_in_logs.py``).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from trackflow.providers.errors import ConfigError
from trackflow.streams.settings import (
    SASL_PASSWORD_VAR,
    SASL_USERNAME_VAR,
    KafkaSecurity,
    KafkaSettings,
)

USERNAME_VAR = SASL_USERNAME_VAR
PASSWORD_VAR = SASL_PASSWORD_VAR


@dataclass(frozen=True, slots=True)
class SaslLogin:
    """A SASL username and password; the password never shows in a repr."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ClientSecurity:
    """The resolved security of one Kafka client, in each client library's own terms."""

    protocol: str  #: ``security.protocol``: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    sasl_mechanism: str  #: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (used by SASL_ protocols)
    login: SaslLogin | None  #: from the environment, present exactly when the protocol is SASL_
    ssl_context: ssl.SSLContext | None  #: present exactly when the protocol uses TLS
    settings: KafkaSecurity  #: what it was resolved from (file paths for librdkafka)

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.ssl_context is not None:
            kwargs["ssl_context"] = self.ssl_context
        if self.login is not None:
            kwargs.update(sasl_mechanism=self.sasl_mechanism,
                          sasl_plain_username=self.login.username,
                          sasl_plain_password=self.login.password)
        return kwargs

    def faust_credentials(self) -> Any:
        """``broker_credentials`` for faust.App: SASLCredentials, SSLCredentials or None."""
        import faust

        if self.login is not None:
            # Faust derives SASL_SSL from the presence of the context, SASL_PLAINTEXT otherwise.
            return faust.SASLCredentials(username=self.login.username,
                                         password=self.login.password,
                                         ssl_context=self.ssl_context,
                                         mechanism=self.sasl_mechanism)
        if self.ssl_context is not None:
            return faust.SSLCredentials(self.ssl_context)
        return None

    def confluent_config(self) -> dict[str, str]:
        """librdkafka properties (confluent-kafka) for the same security."""
        s = self.settings
        conf = {"security.protocol": self.protocol}
        if s.uses_tls:
            conf["ssl.endpoint.identification.algorithm"] = "https" if s.check_hostname else "none"
            for key, path in (("ssl.ca.location", s.ca_file),
                              ("ssl.certificate.location", s.cert_file),
                              ("ssl.key.location", s.key_file)):
                if path is not None:
                    conf[key] = str(path)
        if self.login is not None:
            conf.update({"sasl.mechanisms": self.sasl_mechanism,
                         "sasl.username": self.login.username,
                         "sasl.password": self.login.password})
        return conf

    def describe(self) -> str:
        """A loggable one-line summary: never the password."""
        parts = [f"protocol={self.protocol}"]
        if self.login is not None:
            parts += [f"sasl_mechanism={self.sasl_mechanism}",
                      f"sasl_username={self.login.username}"]
        if self.settings.uses_tls:
            parts += [f"ca_file={self.settings.ca_file or 'system'}",
                      f"client_cert={'yes' if self.settings.cert_file else 'no'}",
                      f"check_hostname={str(self.settings.check_hostname).lower()}"]
        return " ".join(parts)


def sasl_login(settings: KafkaSecurity) -> SaslLogin:
    """The SASL login of ``settings``, or ConfigError naming the missing variable."""
    username = settings.sasl_username or ""
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    missing = [name for name, value in ((USERNAME_VAR, username), (PASSWORD_VAR, password))
               if not value]
    if missing:
        raise ConfigError("kafka.security.protocol",
                          f"a SASL_ protocol needs {' and '.join(missing)} in the environment "
                          "(credentials are never read from the config file)")
    return SaslLogin(username, password)


def ssl_context(settings: KafkaSecurity) -> ssl.SSLContext:
    """A client TLS context: the CA file (else the system's CAs), the client certificate, and
    hostname verification unless ``check_hostname`` is off."""
    try:
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None)
        if settings.cert_file is not None and settings.key_file is not None:
            context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    except (OSError, ssl.SSLError) as exc:
        # ssl errors name the file but never its contents.
        raise ConfigError("kafka.security", f"cannot load the TLS files: {exc}") from None
    if not settings.check_hostname:
        context.check_hostname = False  # the certificate chain is still verified
    return context


def client_security(settings: KafkaSecurity) -> ClientSecurity:
    """Resolve ``[kafka.security]`` for a Kafka client."""
    return ClientSecurity(
        protocol=settings.protocol,
        sasl_mechanism=settings.sasl_mechanism,
        login=sasl_login(settings) if settings.uses_sasl else None,
        ssl_context=ssl_context(settings) if settings.uses_tls else None,
        settings=settings,
    )


def aiokafka_client_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """``bootstrap_servers``, the retry backoff and the security kwargs of an aiokafka client
    (producer, consumer or admin) for ``kafka``."""
    return {"bootstrap_servers": kafka.bootstrap_servers,
            "retry_backoff_ms": kafka.retry_backoff_ms,
            **client_security(kafka.security).aiokafka_kwargs()}

"""[kafka.security] and the one function that turns it into each client library's settings."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from trackflow.providers.errors import ConfigError
from trackflow.providers.urls import mask_url
from trackflow.streams.kafka_security import (
    PASSWORD_VAR,
    USERNAME_VAR,
    aiokafka_client_kwargs,
    client_security,
)
from trackflow.streams.settings import KafkaSecurity, KafkaSettings, load_settings

LOGIN = {USERNAME_VAR: "svc-trackflow", PASSWORD_VAR: "pw-Zq81-secret"}
#: The same login given in code.
IN_CODE = {"sasl_username": "svc-trackflow", "sasl_password": "pw-Zq81-secret"}


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=test-ca", "-keyout", str(folder / "ca.key"),
                    "-out", str(folder / "ca.pem")], check=True, capture_output=True)
    return folder / "ca.pem"


def test_plaintext_is_the_default_and_needs_nothing() -> None:
    sec = client_security(KafkaSecurity())
    assert sec.aiokafka_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert sec.faust_credentials() is None
    assert sec.confluent_config() == {"security.protocol": "PLAINTEXT"}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_maps_to_every_client_library(ca_file: Path, mechanism: str) -> None:
    settings = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism=mechanism,  # type: ignore[arg-type]
                             ca_file=ca_file, **IN_CODE)
    sec = client_security(settings)

    kwargs = sec.aiokafka_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == mechanism
    assert kwargs["sasl_plain_username"] == "svc-trackflow"
    assert kwargs["sasl_plain_password"] == "pw-Zq81-secret"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname, "hostname verification must be on by default"
    assert context.verify_mode == ssl.CERT_REQUIRED

    creds = sec.faust_credentials()
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == mechanism
    conf = sec.confluent_config()
    assert conf["sasl.mechanisms"] == mechanism and conf["ssl.ca.location"] == str(ca_file)
    assert conf["ssl.endpoint.identification.algorithm"] == "https"


def test_sasl_plaintext_has_no_tls_and_ssl_has_no_login() -> None:
    sasl = client_security(KafkaSecurity(protocol="SASL_PLAINTEXT", **IN_CODE)).aiokafka_kwargs()
    assert "ssl_context" not in sasl and sasl["sasl_mechanism"] == "PLAIN"
    tls = client_security(KafkaSecurity(protocol="SSL", **IN_CODE)).aiokafka_kwargs()
    assert "sasl_plain_password" not in tls and isinstance(tls["ssl_context"], ssl.SSLContext)


def test_hostname_verification_can_be_turned_off_but_the_chain_is_still_verified(
        ca_file: Path) -> None:
    sec = client_security(KafkaSecurity(protocol="SSL", ca_file=ca_file, check_hostname=False))
    assert sec.ssl_context is not None
    assert not sec.ssl_context.check_hostname
    assert sec.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert sec.confluent_config()["ssl.endpoint.identification.algorithm"] == "none"


def test_a_sasl_protocol_without_the_login_names_the_missing_variables() -> None:
    with pytest.raises(ConfigError) as err:
        client_security(KafkaSecurity(protocol="SASL_SSL", sasl_username="u"))
    assert PASSWORD_VAR in str(err.value) and USERNAME_VAR not in str(err.value).split("needs")[1]


def test_inconsistent_tls_settings_are_refused(ca_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not use TLS"):
        KafkaSecurity(protocol="SASL_PLAINTEXT", ca_file=ca_file)
    with pytest.raises(ValueError, match="go together"):
        KafkaSecurity(protocol="SSL", cert_file=ca_file)
    with pytest.raises(ValueError, match="not a readable file"):
        KafkaSecurity(protocol="SSL", ca_file=tmp_path / "missing.pem")


def test_settings_come_from_variables_and_the_login_never_from_the_file(
        tmp_path: Path, ca_file: Path) -> None:
    env = {"TRACKFLOW_KAFKA__SECURITY__PROTOCOL": "SASL_SSL",
           "TRACKFLOW_KAFKA__SECURITY__SASL_MECHANISM": "SCRAM-SHA-512",
           "TRACKFLOW_KAFKA__SECURITY__CA_FILE": str(ca_file),
           "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", **LOGIN}
    kafka = load_settings(env=env).kafka
    assert kafka.security.protocol == "SASL_SSL" and kafka.security.ca_file == ca_file
    kwargs = aiokafka_client_kwargs(kafka)
    assert kwargs["bootstrap_servers"] == "127.0.0.1:9"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == \
        ("svc-trackflow", "pw-Zq81-secret")
    assert "pw-Zq81-secret" not in repr(kafka), "the password never shows in a repr"
    config = tmp_path / "c.toml"
    config.write_text('[kafka.security]\nprotocol = "SASL_SSL"\npassword = "x"\n')
    with pytest.raises(ConfigError, match="password"):
        load_settings(config, env={})
    # The login's own keys are refused in the file, naming the variable to use instead.
    for key, var in (("sasl_password", PASSWORD_VAR), ("sasl_username", USERNAME_VAR)):
        config.write_text(f'[kafka.security]\nprotocol = "SASL_SSL"\n{key} = "x"\n')
        with pytest.raises(ConfigError, match=f"kafka.security.{key}.*{var}"):
            load_settings(config, env=LOGIN)


def test_nothing_is_read_from_the_environment_when_the_section_is_built_in_code(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in LOGIN.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=USERNAME_VAR):
        client_security(KafkaSecurity(protocol="SASL_PLAINTEXT"))


def test_three_replicas_get_min_insync_two() -> None:
    assert KafkaSettings().min_isr == 1
    assert KafkaSettings(replication_factor=3).min_isr == 2
    with pytest.raises(ValueError, match="no write could ever succeed"):
        KafkaSettings(replication_factor=1, min_insync_replicas=2)


@pytest.mark.parametrize(("url", "shown"), [
    ("rediss://trackflow:s3cr3t@127.0.0.1:6380/0?ssl_ca_certs=/ca.pem",
     "rediss://trackflow:***@127.0.0.1:6380/0?ssl_ca_certs=/ca.pem"),
    ("redis://:s3cr3t@host/1", "redis://:***@host/1"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
])
def test_mask_url_hides_only_the_password(url: str, shown: str) -> None:
    assert mask_url(url) == shown

"""Settings: precedence, unknown keys refused, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.config import load_settings, redact_url
from exchange.errors import ConfigError


def test_defaults_file_and_environment_in_that_order(tmp_path: Path) -> None:
    (tmp_path / "exchange.toml").write_text('port = 9000\nworkers = 3\ntitle = "From file"\n')
    s = load_settings(tmp_path, env={"EXCHANGE_PORT": "9100"})
    assert (s.port, s.workers, s.title) == (9100, 3, "From file")
    assert s.effective_database_url == f"sqlite:///{tmp_path / 'exchange.db'}"


@pytest.mark.parametrize(("content", "env", "phrase"), [
    pytest.param("prot = 1\n", {}, "unknown key 'prot'", id="unknown-file-key"),
    pytest.param("", {"EXCHANGE_WROKERS": "2"}, "EXCHANGE_WROKERS", id="unknown-env-var"),
    pytest.param("port = 'x'\n", {}, "port must be an integer", id="wrong-type"),
    pytest.param("default_tlp = 'pink'\n", {}, "default_tlp", id="bad-tlp"),
    pytest.param("server_secret = 'abc'\n", {}, "must not be in the configuration",
                 id="secret-in-file"),
    pytest.param("database_url = 'mysql://x'\n", {}, "sqlite:// or postgresql://",
                 id="bad-database"),
    pytest.param("port = [\n", {}, "cannot read", id="broken-toml"),
    pytest.param("", {"EXCHANGE_AUDIT_SEQUENCER_NICE": "20"}, "audit_sequencer_nice",
                 id="nice-beyond-19"),
    pytest.param("audit_sequencer_nice = -5\n", {}, "audit_sequencer_nice",
                 id="nice-above-the-servers"),
])
def test_bad_configuration_is_refused_clearly(tmp_path: Path, content: str,
                                              env: dict[str, str], phrase: str) -> None:
    (tmp_path / "exchange.toml").write_text(content)
    with pytest.raises(ConfigError, match=None) as info:
        load_settings(tmp_path, env=env)
    assert phrase in info.value.reason


def test_secrets_are_redacted_everywhere(tmp_path: Path) -> None:
    s = load_settings(tmp_path, env={
        "EXCHANGE_SERVER_SECRET": "s3cr3t-value",
        "EXCHANGE_DATABASE_URL": "postgresql://cx:hunter2@db/cx",
    })
    assert s.secret_bytes() == b"s3cr3t-value"
    for shown in (repr(s), str(s), str(s.redacted())):
        assert "s3cr3t-value" not in shown
        assert "hunter2" not in shown
    assert s.redacted()["database_url"] == "postgresql://cx:***@db/cx"


def test_missing_secret_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exchange init"):
        load_settings(tmp_path, env={}).secret_bytes()


@pytest.mark.parametrize(("url", "shown"), [
    pytest.param("postgresql://cx:s3cret@db/cx", "postgresql://cx:***@db/cx", id="userinfo"),
    pytest.param("postgresql://cx@db/cx?password=s3cret&sslmode=require",
                 "postgresql://cx@db/cx?password=***&sslmode=require", id="query-password"),
    pytest.param("postgresql://cx@db/cx?sslmode=verify-full&sslpassword=k3y",
                 "postgresql://cx@db/cx?sslmode=verify-full&sslpassword=***",
                 id="query-sslpassword"),
    pytest.param("postgresql://cx@db/cx?PASSWORD=s3cret", "postgresql://cx@db/cx?PASSWORD=***",
                 id="query-upper-case"),
    pytest.param('connection failed: host=db user=cx password=\'s3 cret\' dbname=cx',
                 "connection failed: host=db user=cx password=*** dbname=cx",
                 id="libpq-keyword-value-in-an-error"),
])
def test_redact_url_hides_every_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3" not in redact_url(url)
    assert "k3y" not in redact_url(url)


def test_config_check_hides_a_password_given_in_the_query(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, env={
        "EXCHANGE_DATABASE_URL": "postgresql://cx@db/cx?password=s3cret"})
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.redacted())


def test_redact_url_keeps_urls_without_passwords() -> None:
    assert redact_url("postgresql://cx@db/cx") == "postgresql://cx@db/cx"
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"

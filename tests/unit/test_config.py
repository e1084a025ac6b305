"""config.py: settings from the environment, and clear start-up errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatsphere.config import (
    AuthMode,
    BusKind,
    ConfigError,
    Environment,
    Settings,
    load_settings,
)

SECRET = "s" * 32


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No variable from the machine running the tests leaks into these."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def load(**overrides: object) -> Settings:
    return load_settings(_env_file=None, **overrides)


def error_of(**overrides: object) -> str:
    with pytest.raises(ConfigError) as info:
        load(**overrides)
    return str(info.value)


def test_production_is_the_default_and_needs_a_secret() -> None:
    message = error_of()
    assert "JWT_SECRET" in message


def test_production_with_a_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    settings = load()
    assert settings.environment is Environment.PRODUCTION
    assert settings.effective_jwt_secret == SECRET


def test_short_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "s" * 31)
    assert "JWT_SECRET" in error_of()
    monkeypatch.setenv("ENVIRONMENT", "development")
    assert "JWT_SECRET" in error_of()


def test_dev_auth_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("AUTH_MODE", "dev")
    assert "AUTH_MODE" in error_of()


def test_dev_auth_is_allowed_in_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("AUTH_MODE", "dev")
    settings = load()
    assert settings.auth_mode is AuthMode.DEV
    assert settings.jwt_secret is None
    assert len(settings.effective_jwt_secret.encode()) >= 32


def test_a_bad_number_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("WS_PORT", "abc")
    message = error_of()
    assert "WS_PORT" in message
    assert message.startswith("invalid configuration")


def test_several_bad_values_are_all_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("WS_PORT", "70000")
    monkeypatch.setenv("WS_MAX_CONNECTIONS", "0")
    message = error_of()
    assert "WS_PORT" in message
    assert "WS_MAX_CONNECTIONS" in message


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    settings = load()
    assert settings.ws_port == 8080
    assert settings.http_port is None
    assert settings.effective_http_port == 8081
    assert settings.database_url == "sqlite+aiosqlite:///./chatsphere.db"
    assert settings.ws_max_payload == 1_048_576
    assert settings.ws_max_connections == 10_000
    assert settings.bus is BusKind.MEMORY
    assert settings.auth_mode is AuthMode.JWT
    assert settings.resume_max_events == 10_000
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


def test_seed_variable_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "JWT_SECRET": SECRET,
        "WS_PORT": "9000",
        "WS_MAX_PAYLOAD": "2048",
        "WS_MAX_CONNECTIONS": "5",
        "DATABASE_URL": "postgresql+asyncpg://db/chat",
        "BUS": "redis",
        "REDIS_HOST": "cache",
        "REDIS_PORT": "6380",
        "REDIS_PASSWORD": "pw",
        "REDIS_DATABASE": "2",
        "MODERATION_ENABLED": "false",
        "RATE_LIMIT_ENABLED": "false",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load()
    assert settings.ws_port == 9000
    assert settings.effective_http_port == 9001
    assert (settings.ws_max_payload, settings.ws_max_connections) == (2048, 5)
    assert settings.database_url == "postgresql+asyncpg://db/chat"
    assert settings.bus is BusKind.REDIS
    assert settings.redis_url == "redis://:pw@cache:6380/2"
    assert settings.moderation_enabled is False
    assert settings.rate_limit_enabled is False


def test_explicit_http_port_wins_and_port_zero_stays_random(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    assert load(http_port=9999).effective_http_port == 9999
    assert load(ws_port=0).effective_http_port == 0


def test_env_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "test.env"
    env_file.write_text(f"JWT_SECRET={SECRET}\nWS_PORT=7000\n")
    settings = load_settings(_env_file=str(env_file))
    assert settings.ws_port == 7000
    monkeypatch.setenv("WS_PORT", "7100")  # the environment wins over the file
    assert load_settings(_env_file=str(env_file)).ws_port == 7100

"""Typed settings from the environment and ``.env``, with the seed's variable names.

Every variable is listed in ``.env.example`` with its default. An invalid value stops
start-up with a message naming the variable (see :func:`load_settings`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "chatsphere-development-secret-do-not-use-in-production"  # noqa: S105


class AuthMode(StrEnum):
    JWT = "jwt"
    DEV = "dev"  # also accepts ?userId=NAME; only for local development


class BusKind(StrEnum):
    MEMORY = "memory"
    REDIS = "redis"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """All configuration of one node. Field names map to upper-case variables."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    environment: Environment = Environment.PRODUCTION
    host: str = "0.0.0.0"  # noqa: S104 - a server listens on all interfaces by default
    ws_port: int = Field(8080, ge=0, le=65535)
    http_port: int | None = Field(None, ge=0, le=65535)
    ws_max_payload: int = Field(1_048_576, ge=256)
    ws_max_connections: int = Field(10_000, ge=1)
    log_level: str = "INFO"

    database_url: str = "sqlite+aiosqlite:///./chatsphere.db"
    bus: BusKind = BusKind.MEMORY
    redis_host: str = "127.0.0.1"
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_password: str | None = None
    redis_database: int = Field(0, ge=0)

    auth_mode: AuthMode = AuthMode.JWT
    jwt_secret: str | None = None
    jwt_issuer: str | None = None

    max_message_length: int = Field(10_000, ge=1)
    max_rooms_per_connection: int = Field(500, ge=1)
    resume_max_events: int = Field(10_000, ge=1)
    history_max_limit: int = Field(200, ge=1)
    heartbeat_interval: float = Field(25.0, gt=0)
    heartbeat_timeout: float = Field(20.0, gt=0)
    typing_timeout: float = Field(5.0, gt=0)
    send_queue_bytes: int = Field(4 * 1_048_576, ge=65_536)
    write_batch_max: int = Field(512, ge=1)
    idempotency_window_hours: int = Field(72, ge=24)
    rate_limit_enabled: bool = True
    rate_limit_messages_per_second: float = Field(20.0, gt=0)
    rate_limit_burst: int = Field(60, ge=1)
    shutdown_grace: float = Field(10.0, ge=0)
    #: A file to append the node's own timings to (group commits, checkpoints, garbage
    #: collections, loop lags; see ``chatsphere.timings``). Off when unset.
    timings_log: str | None = None

    moderation_enabled: bool = True
    auto_moderation: bool = True
    adult_content_threshold: float = Field(0.8, ge=0, le=1)
    rtmp_port: int = Field(1935, ge=1, le=65535)
    hls_port: int = Field(8000, ge=1, le=65535)
    max_concurrent_streams: int = Field(100, ge=0)
    e2ee_enabled: bool = False

    @model_validator(mode="after")
    def _check_secrets(self) -> Self:
        if self.jwt_secret is None:
            if self.environment is Environment.PRODUCTION:
                raise ValueError(
                    "JWT_SECRET is required when ENVIRONMENT=production "
                    "(set it, or ENVIRONMENT=development for a local node)"
                )
        elif len(self.jwt_secret.encode()) < 32:
            # RFC 7518 §3.2: an HS256 key must be at least 256 bits.
            raise ValueError("JWT_SECRET must be at least 32 bytes")
        if self.auth_mode is AuthMode.DEV and self.environment is Environment.PRODUCTION:
            raise ValueError("AUTH_MODE=dev is refused when ENVIRONMENT=production")
        return self

    @property
    def effective_jwt_secret(self) -> str:
        return self.jwt_secret or DEV_JWT_SECRET

    @property
    def effective_http_port(self) -> int:
        """HTTP (REST, health, metrics, docs) listens beside the WebSocket port."""
        if self.http_port is not None:
            return self.http_port
        return 0 if self.ws_port == 0 else self.ws_port + 1

    @property
    def redis_url(self) -> str:
        auth = f":{self.redis_password}@" if self.redis_password else ""
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_database}"


class ConfigError(Exception):
    """Start-up configuration is invalid; the message names each bad variable."""


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning validation failures into one readable :class:`ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper() or "configuration"
            lines.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None

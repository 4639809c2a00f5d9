"""Service settings (CONTRACT §5): environment first, then a ``.env`` file.

Secrets are ``SecretStr``: they print as ``**********`` and only ``.get_secret_value()``
reveals them, at the one place that sends them.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    kafka_brokers: str = Field("localhost:9092", validation_alias="GATEWATCH_KAFKA_BROKERS")
    config: str | None = Field(None, validation_alias="GATEWATCH_CONFIG")
    webhook_url: str | None = Field(None, validation_alias="GATEWATCH_WEBHOOK_URL")
    webhook_secret: SecretStr | None = Field(None, validation_alias="GATEWATCH_WEBHOOK_SECRET")
    webhook_format: str = Field("gatewatch", validation_alias="GATEWATCH_WEBHOOK_FORMAT")
    slack_bot_token: SecretStr | None = Field(None, validation_alias="SLACK_BOT_TOKEN")
    slack_channel: str | None = Field(None, validation_alias="GATEWATCH_SLACK_CHANNEL")
    slack_api_url: str = Field("https://slack.com/api/", validation_alias="GATEWATCH_SLACK_API_URL")
    slack_webhook_url: SecretStr | None = Field(None, validation_alias="GATEWATCH_SLACK_WEBHOOK_URL")
    state_dir: str = Field(".gatewatch", validation_alias="GATEWATCH_STATE_DIR")
    topic_prefix: str = Field("gatewatch", validation_alias="GATEWATCH_TOPIC_PREFIX")
    http_port: int = Field(6066, validation_alias="GATEWATCH_HTTP_PORT")
    # `gatewatch tail` sources (connectors/*_source.py). Names that the upstream tools
    # already use (FLY_ACCESS_TOKEN, LANGFUSE_*, DATABASE_URL, REDIS_URL) are kept as they are.
    receiver_secret: SecretStr | None = Field(None, validation_alias="GATEWATCH_RECEIVER_SECRET")
    fly_access_token: SecretStr | None = Field(None, validation_alias="FLY_ACCESS_TOKEN")
    fly_org: str = Field("personal", validation_alias="FLY_ORG")
    fly_nats_url: str = Field("nats://[fdaa::3]:4223", validation_alias="GATEWATCH_FLY_NATS_URL")
    langfuse_host: str = Field("https://cloud.langfuse.com", validation_alias="LANGFUSE_HOST")
    langfuse_public_key: str | None = Field(None, validation_alias="LANGFUSE_PUBLIC_KEY")
    langfuse_secret_key: SecretStr | None = Field(None, validation_alias="LANGFUSE_SECRET_KEY")
    database_url: SecretStr | None = Field(None, validation_alias="DATABASE_URL")
    redis_url: SecretStr | None = Field(None, validation_alias="REDIS_URL")

    @property
    def brokers(self) -> list[str]:
        return [b.strip() for b in self.kafka_brokers.split(",") if b.strip()]

    def masked(self) -> dict:
        """The settings as a dict fit for logs: secrets masked."""
        return {k: ("**********" if isinstance(v, SecretStr) else v) for k, v in self}


def load_settings() -> Settings:
    return Settings()

"""Shared fixtures. Each block below is registered by the module that owns it."""

# Kafka (Tansu) broker fixtures: kafka_bootstrap (session), tansu_factory, lossy_kafka (function).
from tests.kafka_broker import kafka_bootstrap, lossy_kafka, tansu_factory  # noqa: F401

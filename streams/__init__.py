"""The wire: topics, faust app, Kafka clients, event logs, the CLI (no recommender logic)."""

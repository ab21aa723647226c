"""The wire: Kafka settings, topics, clients, event logs, privacy, the local broker.

Nothing here knows of the engine or of faust; everything above builds on it.
"""

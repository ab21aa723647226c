"""vidrec's message types: what travels on the topics and in event logs (no Kafka, no torch)."""

from schemas.messages import (
    MESSAGE_TYPES,
    SCHEMA_VERSION,
    DecodeError,
    ErasureReceipt,
    EventType,
    ForgetUser,
    Message,
    Recommendations,
    RecommendedItem,
    SourceScores,
    UserEvent,
    VideoPublished,
    decode,
    encode,
    json_schemas,
    utcnow,
)

__all__ = [
    "MESSAGE_TYPES",
    "SCHEMA_VERSION",
    "DecodeError",
    "ErasureReceipt",
    "EventType",
    "ForgetUser",
    "Message",
    "RecommendedItem",
    "Recommendations",
    "SourceScores",
    "UserEvent",
    "VideoPublished",
    "decode",
    "encode",
    "json_schemas",
    "utcnow",
]

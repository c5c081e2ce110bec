"""Models to and from JSON: one encoding for the server, its records and the remote SDK."""

from __future__ import annotations

import enum
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import Any

__all__ = ["to_json"]


def to_json(value: Any) -> Any:
    """JSON-safe data: dataclasses by their ``to_dict`` (if any) or fields; times in ISO 8601."""
    if is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        data = (
            to_dict()
            if to_dict is not None
            else {f.name: getattr(value, f.name) for f in fields(value)}
        )
        return {key: to_json(item) for key, item in data.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value

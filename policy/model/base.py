"""The base of every resource model."""

import types
import typing
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator


def _accepts_none(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        annotation
    )


class Model(BaseModel):
    """Strict by default: an unknown or misspelt field is an error, never silently dropped.

    A null value means what it means to Kubernetes: the field's zero value. `spec:` or
    `matchLabels:` with nothing under it is the default (or an empty object); a field that
    takes None keeps it; a required scalar left null is reported as missing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Per input key of a field that does not take None: True if null means {} (a required
    # object), False if it means absent (the default, or "Field required").
    _null_as_empty: ClassVar[dict[str, bool]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._null_as_empty = {
            field.alias or name: field.is_required()
            and isinstance(field.annotation, type)
            and issubclass(field.annotation, BaseModel)
            for name, field in cls.model_fields.items()
            if not _accepts_none(field.annotation)
        }

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: Any) -> Any:
        if not isinstance(data, dict) or None not in data.values():
            return data
        empty = cls._null_as_empty
        cleaned = {}
        for key, value in data.items():
            if value is not None or key not in empty:
                cleaned[key] = value
            elif empty[key]:
                cleaned[key] = {}
        return cleaned

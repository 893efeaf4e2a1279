"""The base of every resource model."""

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Strict by default: an unknown or misspelt field is an error, never silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

"""Shared building blocks of the job contract: camelCase models, quantities, name patterns."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# DNS-1123 label (lower-case alphanumerics and '-', starting and ending alphanumeric).
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# DNS-1035 label: like DNS-1123 but must start with a letter (Service names, KubeRay names).
DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
# Kubernetes resource.Quantity, e.g. "500m", "2", "4Gi", "1.5".
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"

_QUANTITY_RE = re.compile(QUANTITY)
_SUFFIX = {
    "": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}


class PrismModel(BaseModel):
    """Base for every contract model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def to_wire(self) -> dict:
        """The manifest form (camelCase, no unset optionals)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


Quantity = Annotated[
    str,
    Field(
        pattern=QUANTITY,
        max_length=32,
        json_schema_extra={"x-kubernetes-int-or-string": True},
    ),
]


def quantity_value(q: str | int | float) -> float:
    """Numeric value of a Kubernetes quantity ("500m" -> 0.5, "4Gi" -> 4294967296)."""
    text = str(q)
    m = _QUANTITY_RE.match(text)
    if not m:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    suffix = m.group(2) or ""
    return float(text[: len(text) - len(suffix)] if suffix else text) * _SUFFIX[suffix]


def coerce_quantity(value):
    """YAML gives `cpu: 8` as an int; Kubernetes accepts int-or-string, so do we."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    return value


def check_object_name(name: str, limit: int, why: str) -> str:
    """An object name Prism derives children's names from: a DNS-1035 label of at most `limit`
    characters; `why` says what the limit leaves room for."""
    from pydantic_core import PydanticCustomError

    if len(name) > limit:
        raise PydanticCustomError("name_too_long", "must be at most {limit} characters so {why} (got {length}: "
                                  "'{got}')", {"limit": limit, "why": why, "length": len(name), "got": name})
    if not re.match(DNS1035_LABEL, name):
        raise PydanticCustomError("bad_name", "must be a DNS-1035 label: lower-case letters, digits and '-', "
                                  "starting with a letter (got '{got}')", {"got": name})
    return name

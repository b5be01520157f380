"""Turning pydantic errors into messages that name the field, the bad value and what is allowed:

    spec.extractors[1].concurrency.min: must be >= 1 (got 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SpecError(ValueError):
    """An invalid ExtractionJob; `errors` lists every problem found."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def _join(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path


def _got(value: Any) -> str:
    # reprlib bounds the walk too: the input may be a huge or deeply shared structure.
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, 80, 80
    text = short.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _pattern_hint(pattern: str) -> str:
    from .fields import DNS1035_LABEL, DNS1123_LABEL, QUANTITY
    from .job_spec import COLLECTION_NAME, EXTRACTOR_NAME, MODEL_URI

    hints = {
        QUANTITY: "must be a Kubernetes quantity such as 500m, 8, 16Gi",
        MODEL_URI: "must be hf://org/name[@revision], file:///path, s3://bucket/key, gs://bucket/key "
                   "or package://<python-package>",
        EXTRACTOR_NAME: "must start with a lower-case letter and hold only a-z, 0-9, '_' and '-' (max 63)",
        COLLECTION_NAME: "must hold only letters, digits, '_' and '-'",
        DNS1123_LABEL: "must be a DNS-1123 label: lower-case letters, digits and '-'",
        DNS1035_LABEL: "must be a DNS-1035 label: lower-case letters, digits and '-', starting with a letter",
    }
    return hints.get(pattern, f"must match {pattern}")


def _looks_secret(field: Any) -> bool:
    name = str(field).lower().replace("_", "").replace("-", "")
    return any(word in name for word in ("password", "secret", "token", "apikey", "accesskey", "credential"))


def _message(err: dict) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    got = f" (got {_got(value)})"
    match kind:
        case "missing":
            return "is required"
        case "extra_forbidden":
            if _looks_secret(err["loc"][-1]):
                return ("is not a field: secret values never go in the spec; store them in a Secret and "
                        "reference it (spec.source.secretRef, spec.sink.qdrant.apiKeySecretRef)")
            return "is not a known field; check the spelling (see `kubectl explain extractionjob.spec`)"
        case "greater_than_equal":
            return f"must be >= {_num(ctx['ge'])}{got}"
        case "greater_than":
            return f"must be > {_num(ctx['gt'])}{got}"
        case "less_than_equal":
            return f"must be <= {_num(ctx['le'])}{got}"
        case "less_than":
            return f"must be < {_num(ctx['lt'])}{got}"
        case "string_too_short":
            return f"must have at least {ctx['min_length']} characters{got}"
        case "string_too_long":
            return f"must have at most {ctx['max_length']} characters{got}"
        case "too_short":
            n = ctx["min_length"]
            return f"must have at least {n} {'entry' if n == 1 else 'entries'} (got {ctx.get('actual_length')})"
        case "too_long":
            actual = ctx.get("actual_length")  # pydantic leaves it out for a mapping: count it here
            actual = len(value) if actual is None and hasattr(value, "__len__") else actual
            return f"must have at most {ctx['max_length']} entries (got {actual})"
        case "string_pattern_mismatch":
            return f"{_pattern_hint(ctx['pattern'])}{got}"
        case "literal_error" | "enum":
            return f"must be one of {ctx['expected']}{got}"
        case "int_parsing" | "int_type" | "int_from_float":
            return f"must be an integer{got}"
        case "float_parsing" | "float_type":
            return f"must be a number{got}"
        case "bool_parsing" | "bool_type":
            return f"must be true or false{got}"
        case "string_type":
            return f"must be a string{got}"
        case "list_type":
            return f"must be a list{got}"
        case "dict_type" | "model_type" | "model_attributes_type":
            return f"must be a mapping{got}"
    return err["msg"]


def format_validation_error(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[FieldError]:
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(err["loc"])
        if err["type"] == "prism_rules":
            base = _join(loc)
            for path, msg in err["ctx"]["errors"]:
                out.append(FieldError(f"{base}.{path}" if base else path, msg))
        else:
            out.append(FieldError(_join(loc), _message(err)))
    return out


def validate_manifest(model: Any, obj: Any, kind: str) -> Any:
    """`obj` (a dict) as `model`, or SpecError listing every problem with its field."""
    if not isinstance(obj, dict):
        raise SpecError([FieldError("", f"an {kind} must be a mapping (got {type(obj).__name__})")])
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc)) from None

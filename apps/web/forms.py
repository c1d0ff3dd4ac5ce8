"""The new-run form, generated from a pipeline's `params_schema` (pydantic's JSON Schema).

Each parameter becomes an input of its type (number, choice, checkbox, text; JSON for lists and
objects) with the schema's default, bounds and description (which names the book's setting). Values
are handed to `run_submit` as the strings the browser sent: pydantic validates and converts them, so
the form and the REST API accept and refuse exactly the same values, with the same messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ParamField:
    name: str
    label: str
    help_text: str
    widget: str  # number | select | checkbox | text | json
    default: Any = None
    value: Any = None  # what the input shows
    choices: list[str] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    step: str = "any"
    required: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def input_id(self) -> str:
        return f"param-{self.name}"

    @property
    def bounds_text(self) -> str:
        """The bounds in words, for the help line: `1 to 1000`, `at least 0`, ..."""
        if self.minimum is not None and self.maximum is not None:
            return f"{_number(self.minimum)} to {_number(self.maximum)}"
        if self.minimum is not None:
            return f"at least {_number(self.minimum)}"
        if self.maximum is not None:
            return f"at most {_number(self.maximum)}"
        return ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _field_type(schema: dict) -> tuple[str, dict]:
    """The JSON type of a property, looking through Optional's anyOf [type, null]."""
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return option.get("type", ""), {**schema, **option}
    return schema.get("type", ""), schema


def param_fields(schema: dict, values: dict | None = None, errors: dict | None = None) -> list[ParamField]:
    """One field per property of `schema`, showing `values` (else the defaults) and `errors` by name."""
    values = values or {}
    errors = errors or {}
    required = set(schema.get("required", []))
    fields = []
    for name, raw in schema.get("properties", {}).items():
        kind, prop = _field_type(raw)
        default = prop.get("default")
        value = values.get(name, default)
        param = ParamField(
            name=name,
            label=prop.get("title") or name.replace("_", " ").capitalize(),
            help_text=prop.get("description", ""),
            widget="text",
            default=default,
            value=value,
            required=name in required,
            errors=list(errors.get(name, [])),
        )
        if "enum" in prop:
            param.widget = "select"
            param.choices = [str(choice) for choice in prop["enum"]]
        elif kind == "boolean":
            param.widget = "checkbox"
            param.value = value in (True, "true", "on", "1")
        elif kind in ("integer", "number"):
            param.widget = "number"
            param.step = "1" if kind == "integer" else "any"
            if "minimum" in prop:
                param.minimum = prop["minimum"]
            elif "exclusiveMinimum" in prop:
                # An integer above n is at least n + 1; a number above n has no least value to show.
                param.minimum = prop["exclusiveMinimum"] + 1 if kind == "integer" else prop["exclusiveMinimum"]
            if "maximum" in prop:
                param.maximum = prop["maximum"]
            elif "exclusiveMaximum" in prop:
                param.maximum = prop["exclusiveMaximum"] - 1 if kind == "integer" else prop["exclusiveMaximum"]
        elif kind in ("array", "object"):
            param.widget = "json"
            param.value = value if isinstance(value, str) else json.dumps(value)
        fields.append(param)
    return fields


def params_from_post(schema: dict, post) -> tuple[dict, dict[str, list[str]]]:
    """(params for run_submit, errors of values that are not even JSON) from a submitted form.

    An empty input means the default. Unchecked checkboxes are sent by no browser, so a boolean
    absent from the form is False.
    """
    params: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for param in param_fields(schema):
        text = post.get(param.input_id)
        if param.widget == "checkbox":
            params[param.name] = text is not None
        elif text is None or text.strip() == "":
            continue
        elif param.widget == "json":
            try:
                params[param.name] = json.loads(text)
            except ValueError as error:
                errors[param.name] = [f"Not valid JSON: {error}."]
        else:
            params[param.name] = text.strip()
    return params, errors

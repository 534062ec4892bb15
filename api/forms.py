"""The dashboard's submit forms, made from each kind's params model (its JSON schema): a field per param, with
its type, default, choices and description. The form posts JSON to POST /jobs, so the one validation is
the API's, and its per-field errors are shown beside these fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


@dataclass
class FormField:
    name: str
    input: str  # text | number | checkbox | select | list | lines
    json_type: str  # what the form's script sends: string | integer | number | boolean | array
    label: str
    description: str = ""
    default: Any = None
    required: bool = False
    choices: list[str] = field(default_factory=list)
    step: str = "any"
    minimum: float | None = None
    maximum: float | None = None


def _plain(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of a field without its `| None` and with $refs resolved."""
    if "$ref" in schema:
        schema = {**defs[schema["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in schema.items() if k != "$ref"}}
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(options) == 1:
        return {**{k: v for k, v in schema.items() if k != "anyOf"}, **_plain(options[0], defs)}
    return schema


def form_fields(model: type[BaseModel]) -> list[FormField]:
    schema = model.model_json_schema()
    defs, required = schema.get("$defs", {}), set(schema.get("required", []))
    fields = []
    for name, raw in schema["properties"].items():
        spec = _plain(raw, defs)
        kind = spec.get("type")
        f = FormField(name=name, input="text", json_type=kind if isinstance(kind, str) else "string",
                      label=name.replace("_", " "), required=name in required,
                      description=raw.get("description") or spec.get("description", ""),
                      default=raw.get("default"), minimum=spec.get("minimum"), maximum=spec.get("maximum"))
        if "enum" in spec:
            f.input, f.choices = "select", [str(c) for c in spec["enum"]]
        elif kind == "boolean" and isinstance(f.default, bool):
            f.input = "checkbox"
        elif kind == "boolean":  # unset means "the preset decides": yes, no or leave it
            f.input, f.choices = "select", ["true", "false"]
        elif kind in ("integer", "number"):
            f.input, f.step = "number", "1" if kind == "integer" else "any"
        elif kind == "array" and raw.get("form") == "lines":  # items that hold commas themselves
            f.input = "lines"
            f.description = (f.description + " (one per line)").strip()
        elif kind == "array":
            f.input = "list"
            f.description = (f.description + " (comma-separated)").strip()
        fields.append(f)
    return fields

"""Check an answer against the app's own OpenAPI document (``app.openapi()``).

``jsonschema`` is not installed here (nor a dependency of anything we install), so this is
a small validator of the JSON Schema subset FastAPI and pydantic emit for our models:
``$ref``, ``type``, ``properties``, ``required``, ``additionalProperties``, ``items``,
``anyOf``, ``enum``, ``const`` and the numeric and length bounds. A keyword it does not know
fails the check (it never passes what it cannot judge); annotations (``title``,
``description``, ``default``, ...) are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "format", "contentMediaType", "deprecated"}
)
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def response_schema(spec: Mapping[str, Any], method: str, path: str, status: int) -> Any:
    """The JSON schema the document gives the ``status`` answer of ``method path`` (the
    route's template, e.g. ``/api/image/{image_id}``); KeyError when it documents none."""
    responses = spec["paths"][path][method.lower()]["responses"]
    return responses[str(status)]["content"]["application/json"]["schema"]


def media_types(spec: Mapping[str, Any], method: str, path: str, status: int) -> list[str]:
    """The content types the document gives the ``status`` answer of ``method path``."""
    responses = spec["paths"][path][method.lower()]["responses"]
    return list(responses[str(status)].get("content", {}))


def check_response(
    spec: Mapping[str, Any], method: str, path: str, response: httpx.Response
) -> list[str]:
    """What is wrong with ``response`` by the document (empty: it validates): its status is
    documented, its content type is one the document names, a JSON body matches the schema."""
    operation = spec["paths"][path][method.lower()]
    documented = operation["responses"].get(str(response.status_code))
    if documented is None:
        return [f"{method} {path}: status {response.status_code} is not documented"]
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    types = list(documented.get("content", {}))
    if types and not any(_media_matches(t, content_type) for t in types):
        return [f"{method} {path}: content type {content_type!r} is not one of {types}"]
    if content_type == "application/json":
        media = documented.get("content", {}).get("application/json")
        if media is None:
            # E.g. an error answer declared without our error schema: a body goes unchecked.
            return [f"{method} {path}: status {response.status_code} has no JSON schema"]
        return validate(response.json(), media.get("schema", {}), spec, where=f"{method} {path}")
    return []


def _media_matches(documented: str, actual: str) -> bool:
    if documented.endswith("/*"):
        return actual.startswith(documented[:-1])
    return documented == actual


def validate(value: Any, schema: Any, spec: Mapping[str, Any], where: str = "$") -> list[str]:
    """The ways ``value`` breaks ``schema`` (``$ref``s resolved in ``spec``); empty: none."""
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{where}: no value is allowed"]
    errors: list[str] = []
    for key, rule in schema.items():
        if key in _ANNOTATIONS:
            continue
        check = _KEYWORDS.get(key)
        if check is None:
            return [f"{where}: unsupported schema keyword {key!r} (extend tests/support/openapi)"]
        errors += check(value, rule, schema, spec, where)
    return errors


def _ref(value: Any, rule: str, schema: Any, spec: Mapping[str, Any], where: str) -> list[str]:
    if not rule.startswith("#/"):
        return [f"{where}: external $ref {rule!r}"]
    target: Any = spec
    for part in rule[2:].split("/"):
        target = target[part]
    return validate(value, target, spec, where)


def _type(value: Any, rule: str | list[str], schema: Any, spec: Any, where: str) -> list[str]:
    names = [rule] if isinstance(rule, str) else rule
    for name in names:
        # bool is an int in Python, not in JSON.
        if isinstance(value, _TYPES[name]) and not (
            isinstance(value, bool) and name in ("integer", "number")
        ):
            return []
    return [f"{where}: {type(value).__name__} {value!r:.60} is not {' or '.join(names)}"]


def _properties(value: Any, rule: dict[str, Any], schema: Any, spec: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return []
    errors: list[str] = []
    for name, sub in rule.items():
        if name in value:
            errors += validate(value[name], sub, spec, f"{where}.{name}")
    return errors


def _required(value: Any, rule: list[str], schema: Any, spec: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return []
    return [f"{where}: {name!r} is missing" for name in rule if name not in value]


def _additional(value: Any, rule: Any, schema: Any, spec: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return []
    known = set(schema.get("properties", {}))
    errors: list[str] = []
    for name, item in value.items():
        if name not in known:
            errors += validate(item, rule, spec, f"{where}.{name}")
    return errors


def _items(value: Any, rule: Any, schema: Any, spec: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        return []
    errors: list[str] = []
    for i, item in enumerate(value):
        errors += validate(item, rule, spec, f"{where}[{i}]")
    return errors


def _any_of(value: Any, rule: list[Any], schema: Any, spec: Any, where: str) -> list[str]:
    failures = [validate(value, sub, spec, where) for sub in rule]
    if any(not f for f in failures):
        return []
    return [f"{where}: matches none of anyOf: {[f[0] for f in failures]}"]


def _enum(value: Any, rule: list[Any], schema: Any, spec: Any, where: str) -> list[str]:
    return [] if value in rule else [f"{where}: {value!r} is not one of {rule}"]


def _const(value: Any, rule: Any, schema: Any, spec: Any, where: str) -> list[str]:
    return [] if value == rule else [f"{where}: {value!r} is not {rule!r}"]


def _bound(name: str) -> Any:
    def check(value: Any, rule: Any, schema: Any, spec: Any, where: str) -> list[str]:
        if name in ("minLength", "maxLength"):
            if not isinstance(value, str):
                return []
            measured: float = len(value)
        elif name in ("minItems", "maxItems"):
            if not isinstance(value, list):
                return []
            measured = len(value)
        else:
            if not isinstance(value, int | float) or isinstance(value, bool):
                return []
            measured = value
        ok = {
            "minimum": measured >= rule,
            "maximum": measured <= rule,
            "exclusiveMinimum": measured > rule,
            "exclusiveMaximum": measured < rule,
            "minLength": measured >= rule,
            "maxLength": measured <= rule,
            "minItems": measured >= rule,
            "maxItems": measured <= rule,
        }[name]
        return [] if ok else [f"{where}: {value!r:.60} breaks {name} {rule}"]

    return check


_KEYWORDS: dict[str, Any] = {
    "$ref": _ref,
    "type": _type,
    "properties": _properties,
    "required": _required,
    "additionalProperties": _additional,
    "items": _items,
    "anyOf": _any_of,
    "enum": _enum,
    "const": _const,
    **{
        name: _bound(name)
        for name in (
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "minLength",
            "maxLength",
            "minItems",
            "maxItems",
        )
    },
}

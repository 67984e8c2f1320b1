"""The shape of every job record the analysis, the report and `status` read: one schema per (kind,
file), checked where records are read (`results.read_finished`), so a damaged or edited record is
named with the key that is wrong, and left out, instead of failing deep in a reader.

A schema is a type (or tuple of types; a number is an int or float, never a bool), a dict of
required keys (the key `str` instead: every key of a mapping), a one-element list (every item), or
`Maybe(schema)` (the key may be absent or null). Only what the readers rely on is required: records
written by older versions, which lack newer optional keys, still pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NUMBER = (int, float)
NULLABLE_NUMBER = (int, float, type(None))
"""A key that must be there, holding a number or null (a number that could not be computed)."""


@dataclass(frozen=True)
class Maybe:
    """A key that may be absent, or null."""

    schema: Any


_GAMES = {str: {"nll_nats_per_frame": NUMBER}}
SCHEMAS: dict[tuple[str, str], Any] = {
    ("fidelity", "fidelity.json"): {"games": _GAMES, "best": Maybe({"step": int, "games": _GAMES})},
    ("control", "control.json"): {"game": str, "returns": [NUMBER], "lengths": [NUMBER],
                                  "anchors": {"random": {"returns": [NUMBER]}}},
    ("analysis", "analysis.json"): {"modes": {str: {str: {"regime": str, "best_params": NULLABLE_NUMBER,
                                                         "reason": str}}},
                                    "rule": {"version": str, "alpha": NUMBER, "min_sizes": int, "min_seeds": int}},
    ("dynamics", "done.json"): {"outputs": {"params": {"total": int, "blocks": int}}},
    ("control", "done.json"): {"outputs": {"game": str, "score": NUMBER, "normalised": NULLABLE_NUMBER,
                                           "upper_kind": str, "diagnostic": Maybe({str: {str: NULLABLE_NUMBER}})}},
    ("policy", "done.json"): {"outputs": {"final": Maybe(dict)}},
    ("tokenizer", "done.json"): {"outputs": {"quality": Maybe({str: dict})}},
}
"""(job kind, file) -> the schema of that record."""


def problem(value: Any, schema: Any, where: str = "") -> str | None:
    """Why `value` does not fit `schema` ("modes.single.Pong.regime is a whole number, not a string"),
    or None."""
    name = where or "the record"
    if isinstance(schema, Maybe):
        return None if value is None else problem(value, schema.schema, where)
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return f"{name} is {_kind(type(value))}, not an object"
        if str in schema:
            for key, item in value.items():
                found = problem(item, schema[str], f"{where}.{key}" if where else str(key))
                if found:
                    return found
            return None
        for key, sub in schema.items():
            if key not in value:
                if isinstance(sub, Maybe):
                    continue
                return f"{where + '.' if where else ''}{key} is missing"
            found = problem(value[key], sub, f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    if isinstance(schema, list):
        if not isinstance(value, list):
            return f"{name} is {_kind(type(value))}, not a list"
        for i, item in enumerate(value):
            found = problem(item, schema[0], f"{where}[{i}]")
            if found:
                return found
        return None
    types = schema if isinstance(schema, tuple) else (schema,)
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        wanted = " or ".join(_kind(t) for t in types if t is not int or float not in types)  # a number: not "whole"
        return f"{name} is {_kind(type(value))}, not {wanted}"
    return None


def _kind(t: type) -> str:
    return {float: "a number", int: "a whole number", type(None): "null", str: "a string", dict: "an object",
            list: "a list", bool: "a boolean"}.get(t, f"a {t.__name__}")

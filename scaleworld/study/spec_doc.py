"""`scaleworld spec [SPEC] [KEY=VALUE ...]`: a study spec as YAML with every key, its value (the
file's, an override's, or the schema's default) and the schema's own words about it as a comment.

The comments are the attribute docstrings under each field of `scaleworld.study.spec` (read from its
source with `ast`: the schema is the one place a setting is described, so the printed spec and the
code cannot disagree). With no SPEC it prints the schema's defaults (the keys a spec must give, name
and games, show as ???).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
from functools import cache
from typing import Any

from scaleworld.study import spec as schema

WIDTH = 100  # comment lines wrap here


@cache
def field_docs() -> dict[str, dict[str, str]]:
    """class name -> field name -> the docstring written under that field in the schema's source (the
    protocol section's: `Protocol`'s, which it mirrors field for field)."""
    from scaleworld.atari import protocol

    docs: dict[str, dict[str, str]] = {}
    for node in [n for module in (schema, protocol) for n in ast.parse(inspect.getsource(module)).body]:
        if isinstance(node, ast.ClassDef):
            fields = docs.setdefault(node.name, {})
            for field, after in zip(node.body, node.body[1:]):
                if (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)
                        and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                        and isinstance(after.value.value, str)):
                    fields[field.target.id] = " ".join(after.value.value.split())
    return docs


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value and value.strip() == value and not any(c in value for c in ":#{}[],&*?|>'\"%@`") \
            and value.lower() not in ("null", "true", "false", "yes", "no", "~") else json.dumps(value)
    return json.dumps(value) if isinstance(value, (list, dict)) else repr(value)


def annotated(values: dict[str, Any], cls: type, indent: str = "") -> list[str]:
    """YAML lines of `values` (a plain dict of `cls`'s fields), each key under its comment."""
    docs = field_docs().get("Protocol" if cls is schema.ProtocolSpec else cls.__name__, {})
    lines = []
    for f in dataclasses.fields(cls):
        value = values.get(f.name)
        if f.name in docs:
            lines += [f"{indent}# {line}" for line in textwrap.wrap(docs[f.name], WIDTH - len(indent) - 2)]
        nested = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if isinstance(nested, type) and dataclasses.is_dataclass(nested) and isinstance(value, dict):
            lines.append(f"{indent}{f.name}:")
            lines += annotated(value, nested, indent + "  ")
        else:
            lines.append(f"{indent}{f.name}: {_scalar(value)}")
    return lines


def spec_text(spec: Any | None) -> str:
    """The annotated YAML of a loaded spec (a DictConfig of StudySpec), or of the schema's defaults."""
    from omegaconf import OmegaConf

    config = spec if spec is not None else OmegaConf.structured(schema.StudySpec)
    values = OmegaConf.to_container(config, resolve=False, throw_on_missing=False)
    return "\n".join(annotated(values, schema.StudySpec)) + "\n"

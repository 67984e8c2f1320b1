"""Reading a study spec: `load_spec(path, overrides)` merges the YAML and command-line dotlist
overrides (``key=value``) onto the schema (`scaleworld.study.spec`) and returns a resolved, read-only
`StudySpec`. Every problem is one `SpecError` line naming the key path and the fix: an unknown key
(with "did you mean"), a wrong type, an unknown game, ladder or size, a missing value, an
impossible budget (the checks: `scaleworld.study.spec_check`).
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from scaleworld.study.spec import SpecError, StudySpec
from scaleworld.study.spec_check import check_spec
from scaleworld.study.variants import expand_variants, merge, spec_error


def load_spec(path: str | Path, overrides: list[str] = ()) -> Any:
    """Read, merge and validate a spec; returns a resolved, read-only DictConfig of `StudySpec`."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeys) or {}  # _UniqueKeys is a SafeLoader
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}): fix the syntax") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise SpecError(f"{path}: cannot be read as a text spec ({type(exc).__name__}): give a YAML file") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec is a mapping of keys to values, not a {type(raw).__name__}")
    schema = OmegaConf.structured(StudySpec)
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise SpecError(f"override {bad[0]!r}: write overrides as key=value, e.g. train.steps=100")
    for o in overrides:
        key = o.split("=", 1)[0]
        if not key or any(not part for part in key.split(".")):
            raise SpecError(f"override {o!r}: the key {key!r} has an empty part: write e.g. train.steps=100")
    try:
        cli = OmegaConf.from_dotlist(list(overrides))
    except (OmegaConfBaseException, yaml.YAMLError) as exc:
        raise SpecError(f"overrides {list(overrides)}: cannot be parsed ({str(exc).splitlines()[0]})") from None
    _check_shapes(raw, StudySpec, "")
    _check_shapes(OmegaConf.to_container(cli), StudySpec, "")
    spec = merge(schema, OmegaConf.create(raw), cli)
    try:
        OmegaConf.to_container(spec, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        raise spec_error(exc, schema) from None
    if spec.run_root is None:
        spec.run_root = str(Path("runs") / spec.name)
    else:  # where the user put it: ~ is their home, not a folder named "~" here
        spec.run_root = str(Path(spec.run_root).expanduser())
    check_spec(spec)
    for variant in expand_variants(spec):
        check_spec(variant.spec, where=f"variant {variant.name}: ", shares_anchors=variant.reference is not None)
    OmegaConf.set_readonly(spec, True)
    return spec


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping (PyYAML keeps the last one
    silently: a section written twice would lose the first's settings without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is written twice in one mapping (line {key_node.start_mark.line + 1}): "
                                "keep one, merged", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_shapes(value: Any, schema: Any, path: str) -> None:
    """Mappings where the schema has a section, lists where it has a list, single values in lists of
    values: omegaconf's own errors for these are tracebacks or name its internals."""
    if dataclasses.is_dataclass(schema):
        if not isinstance(value, dict):
            raise SpecError(f"{path or 'the spec'}: give a mapping of keys (e.g. {path}.KEY: VALUE), "
                            f"not {value!r}")
        fields = {f.name: f.type for f in dataclasses.fields(schema)}
        hints = typing.get_type_hints(schema)
        for key, sub in value.items():
            if key in fields:
                _check_shapes(sub, hints[key], f"{path}.{key}" if path else str(key))
        return
    origin = typing.get_origin(schema)
    args = typing.get_args(schema)
    if origin is typing.Union:  # X | None
        if value is None:
            return
        schema = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(schema), typing.get_args(schema)
    if origin is list:
        if not isinstance(value, list):
            raise SpecError(f"{path}: give a list, e.g. {path}: [{value}]" if not isinstance(value, dict)
                            else f"{path}: give a list, not a mapping")
        for i, item in enumerate(value):
            if isinstance(item, (list, dict)) and args and args[0] is not Any:
                raise SpecError(f"{path}[{i}]: give a single value, not a {type(item).__name__}")
    elif origin is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{path}: give a mapping, not {value!r}")
        if len(args) == 2 and typing.get_origin(args[1]) is list:
            for key, item in value.items():
                if not isinstance(item, list):
                    raise SpecError(f"{path}.{key}: give a list of values, e.g. {path}.{key}: [{item}]")
    elif schema in (int, float, str, bool) and isinstance(value, (list, dict)):
        raise SpecError(f"{path}: give a single value, not a {type(value).__name__}")

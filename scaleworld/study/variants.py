"""Variants of a spec: ``sweep.grid`` (every combination) and ``sweep.zip`` (lists advanced
together) map dotted spec keys to lists of values; ``ablations`` maps names to dotted overrides. Each
variant is a full spec; `expand_variants` lists them, and the planner merges their jobs (identical
jobs are shared). `merge` is omegaconf's, with its errors as one `SpecError` line.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from scaleworld.study.spec import BASE_VARIANT, SourceSpec, SpecError, StudySpec, source_overrides


@dataclass(frozen=True)
class Variant:
    name: str
    """``base``, ``grid[train.lr=0.001]``-style names, or an ablation's name."""
    spec: Any  # an omegaconf DictConfig of StudySpec, resolved
    reference: Any = None
    """A data source's variant: the base spec, whose tokenizer, held-out episodes and anchors it
    shares (`StudySpec.sources`); None for the others."""


def _keys_of(node: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            path = f"{prefix}.{k}" if prefix else str(k)
            out.append(path)
            out += _keys_of(node._get_node(k), path)
    return out


def spec_error(exc: Exception, schema: Any) -> SpecError:
    """Turn an omegaconf exception into one line naming the key path and the fix."""
    key = getattr(exc, "full_key", None) or "?"
    if isinstance(exc, ConfigKeyError):
        parent, _, leaf = str(key).rpartition(".")
        siblings = [k.rpartition(".")[2] for k in _keys_of(schema)
                    if k.rpartition(".")[0] == parent]
        if not siblings and parent.count(".") == 1 and parent.startswith("sources."):  # a source's own keys
            siblings = [f.name for f in dataclasses.fields(SourceSpec)]
        close = difflib.get_close_matches(leaf, siblings, n=1)
        hint = f"did you mean {(parent + '.' if parent else '') + close[0]!r}? " if close else ""
        return SpecError(f"unknown key {key!r}: {hint}valid keys here are {', '.join(sorted(siblings))}")
    if isinstance(exc, MissingMandatoryValue):
        return SpecError(f"missing value for {key!r}: set it in the spec or as {key}=VALUE")
    if isinstance(exc, ValidationError):
        msg = str(exc).splitlines()[0]
        return SpecError(f"wrong type for {key!r}: {msg}")
    return SpecError(f"invalid spec at {key!r}: {str(exc).splitlines()[0]}")


def merge(base: Any, *others: Any) -> Any:
    try:
        return OmegaConf.merge(base, *others)
    except OmegaConfBaseException as exc:
        raise spec_error(exc, base) from None


def _apply(spec: Any, overrides: dict[str, Any], where: str) -> Any:
    schema = OmegaConf.structured(StudySpec)
    dotlist = OmegaConf.from_dotlist([f"{k}={_yaml_value(v)}" for k, v in overrides.items()])
    try:
        return merge(schema, spec, dotlist)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _yaml_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict, str)) or value is None else str(value)


def expand_variants(spec: Any) -> list[Variant]:
    """The base spec, one variant per sweep point (grid x zip), one per ablation, one per data source."""
    base = OmegaConf.masked_copy(spec, [k for k in spec.keys() if k not in ("sweep", "ablations")])
    grid_keys = list(spec.sweep.grid.keys())
    zip_keys = list(spec.sweep.zip.keys())
    grid_points = list(itertools.product(*[list(spec.sweep.grid[k]) for k in grid_keys])) or [()]
    zip_points = list(zip(*[list(spec.sweep.zip[k]) for k in zip_keys])) or [()]
    variants = []
    for g in grid_points:
        for z in zip_points:
            overrides = dict(zip(grid_keys, g)) | dict(zip(zip_keys, z))
            name = BASE_VARIANT if not overrides else ",".join(f"{k}={v}" for k, v in overrides.items())
            variants.append(Variant(name, _apply(base, overrides, f"sweep {name}")))
    for name, overrides in spec.ablations.items():
        variants.append(Variant(str(name), _apply(base, dict(overrides), f"ablations.{name}")))
    plain = OmegaConf.masked_copy(base, [k for k in base.keys() if k != "sources"])
    reference = _apply(plain, {}, "the spec") if spec.sources else None
    for name, source in spec.sources.items():
        variants.append(Variant(str(name), _apply(plain, source_overrides(base, source), f"sources.{name}"),
                                reference=reference))
    return variants

"""Every default is stated once: a spec section that mirrors a config dataclass takes the config's
default by reference, never by restating its literal (a changed default would otherwise split the
spec from the code that runs it), and the command line's defaults come from the same places."""

import ast
import dataclasses
from pathlib import Path

from scaleworld.experts.ppo_config import PPOConfig
from scaleworld.models.dynamics_config import DynamicsConfig
from scaleworld.study import spec
from scaleworld.training.config import TrainConfig

SPEC = Path(spec.__file__)
MIRRORS = {"TrainSpec": TrainConfig, "ModelsSpec": DynamicsConfig, "ExpertSpec": PPOConfig}
"""Spec sections and the config whose fields of the same name they hand on."""


def _literal_defaults(section: str) -> dict[str, object]:
    """The fields of `section` in spec.py whose default is written as a literal."""
    (cls,) = [n for n in ast.parse(SPEC.read_text()).body if isinstance(n, ast.ClassDef) and n.name == section]
    return {n.target.id: n.value.value for n in cls.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.value, ast.Constant) and n.value.value is not None}


def test_spec_sections_do_not_restate_their_configs_defaults():
    restated = []
    for section, config in MIRRORS.items():
        defaults = {f.name: f.default for f in dataclasses.fields(config)}
        for name, value in _literal_defaults(section).items():
            if name in defaults and defaults[name] == value:
                restated.append(f"{section}.{name} = {value!r} restates {config.__name__}.{name}")
    assert not restated, "\n".join(restated)


def test_the_command_line_takes_its_defaults_from_the_configs():
    from scaleworld.cli.main import build_parser

    parser = build_parser()

    def defaults(*words):
        sub = parser
        for word in words:
            sub = next(a for a in sub._actions if a.dest in ("group", "command") and word in (a.choices or {}))
            sub = sub.choices[word]
        return {a.dest: a.default for a in sub._actions}

    dynamics = defaults("train", "dynamics")
    assert dynamics["context"] == DynamicsConfig.context == spec.ModelsSpec().context
    assert dynamics["val_fraction"] == spec.DataSpec().val_fraction
    assert dynamics["batch_size"] == TrainConfig.batch_size == spec.TrainSpec().batch_size
    fidelity = defaults("eval", "fidelity")
    f = spec.FidelitySpec()
    assert (fidelity["context_steps"], fidelity["horizon"], fidelity["rollouts"]) == (f.context_steps, f.horizon,
                                                                                     f.rollouts)

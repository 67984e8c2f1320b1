"""Every default is stated once: a spec section that mirrors a config dataclass takes the config's
default by reference, never by restating its literal (a changed default would otherwise split the
spec from the code that runs it), and the command line's defaults come from the same places."""

import ast
import dataclasses
from pathlib import Path

from scaleworld.analysis.regimes import RegimeRule
from scaleworld.experts.ppo_config import PPOConfig
from scaleworld.models.dynamics_config import DynamicsConfig
from scaleworld.study import spec
from scaleworld.training.config import TrainConfig

SPEC = Path(spec.__file__)
MIRRORS = {"TrainSpec": TrainConfig, "ModelsSpec": DynamicsConfig, "ExpertSpec": PPOConfig, "AnalysisSpec": RegimeRule}
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


STATED_ONCE = {  # a default that several layers hand on, and the one module that states it
    "val_fraction": "data/held_out.py", "split_seed": "data/held_out.py", "validation_fraction": "data/held_out.py",
    "lmbda": "models/policy_config.py", "return_decay": "models/policy_config.py",
    "units": "models/policy_config.py", "layers": "models/policy_config.py",
    "hidden_size": "models/dynamics_config.py", "num_actions": "atari/games.py",
}


def test_defaults_handed_on_through_the_layers_are_written_in_one_module():
    """Keyword defaults and dataclass fields of these names take their default from the one module
    that states it: a literal anywhere else is a second statement (the scan reads the source, so a
    default written as a name passes and a restated number fails)."""
    package = SPEC.parents[1]
    restated = []
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            pairs = []
            if isinstance(node, ast.ClassDef):
                pairs = [(n.target.id, n.value) for n in node.body
                         if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.value is not None]
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                a = node.args
                positional = a.posonlyargs + a.args
                pairs = [(arg.arg, d) for arg, d in zip(positional[len(positional) - len(a.defaults):], a.defaults)]
                pairs += [(arg.arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
            for name, default in pairs:
                if (name in STATED_ONCE and STATED_ONCE[name] != where and isinstance(default, ast.Constant)
                        and default.value is not None):
                    restated.append(f"{where}: {name} = {default.value!r} (stated in {STATED_ONCE[name]})")
    assert not restated, "\n".join(restated)


def test_the_actor_critic_and_its_loss_take_the_policy_sections_defaults():
    import inspect

    from scaleworld.models.agent import AgentConfig
    from scaleworld.models.policy_config import PolicyConfig
    from scaleworld.objectives.actor_critic import ActorCriticLoss

    loss = inspect.signature(ActorCriticLoss).parameters
    policy = PolicyConfig()
    for name in ("gamma", "lmbda", "entropy_coef", "return_decay"):
        assert loss[name].default == getattr(policy, name), name
    agent = AgentConfig()
    assert (agent.units, agent.layers) == (policy.units, policy.layers)
    assert (agent.groups, agent.classes, agent.hidden_size) == (DynamicsConfig.groups, DynamicsConfig.classes,
                                                                 DynamicsConfig.width)

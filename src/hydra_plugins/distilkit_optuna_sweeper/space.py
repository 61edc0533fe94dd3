"""Hydra sweep overrides -> Optuna distributions; unknown keys and empty ranges are ConfigErrors.

``interval(a, b)`` -> FloatDistribution, ``int(interval(a, b))`` -> IntDistribution (both bounds included), ``tag(log, interval(a, b))`` -> log scale,
``range(a, b[, step])`` -> IntDistribution over Hydra's range (``b`` excluded, as in Hydra),
``choice(x, y)`` and ``a,b,c`` -> CategoricalDistribution; a plain ``key=value`` is fixed.
"""

from __future__ import annotations

import difflib
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from distilkit.errors import ConfigError, check

PARAMS_KEY = "hydra.sweeper.params"


def distribution(override: Override) -> BaseDistribution | str:
    key = override.get_key_element()
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        check(bool(choices), key, "the choice is empty; give one or more values")
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator(transformer=Transformer.identity))
        check(bool(values), key, f"range({value.start}, {value.stop}, {value.step}) is empty (the stop is excluded, as in Hydra)")
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return FloatDistribution(values[0], values[-1], step=value.step)
        return IntDistribution(int(values[0]), int(values[-1]), step=int(value.step))
    if isinstance(value, IntervalSweep):
        check(value.start < value.end, key, f"interval({value.start}, {value.end}) is empty; the start must be below the end")
        log = "log" in value.tags
        check(not log or value.start > 0, key, f"a log interval must start above 0, got {value.start}")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ConfigError(key, f"{override.input_line!r}: use interval(a,b), tag(log,interval(a,b)), range(a,b) or choice(x,y)")


def config_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every key of the job config (``loss.T``, ``loss``), for near-match suggestions."""
    out = []
    if isinstance(cfg, DictConfig):
        for k in cfg.keys():
            name = f"{prefix}{k}"
            if name == "hydra":
                continue
            out.append(name)
            out += config_keys(cfg._get_node(k), f"{name}.")
    return out


def check_keys(overrides: list[Override], config: DictConfig) -> None:
    """A key that is not in the config (and not ``+key``) is an error naming its near matches."""
    known = None
    for override in overrides:
        key = override.key_or_group
        if override.is_add() or override.is_force_add() or key.startswith("hydra."):
            continue
        if OmegaConf.select(config, key, default=_MISSING) is _MISSING:
            known = known or config_keys(config)
            near = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(near)}?" if near else "; prefix it with + to add a new key"
            raise ConfigError(key, f"is not a key of the config (search space){hint}")


_MISSING = object()


def parse(params: dict | None, arguments: list[str], config: DictConfig, config_loader=None) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """(search space, fixed overrides) from ``hydra.sweeper.params`` and the command line."""
    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(lines)
    check_keys(parsed, config)
    space, fixed = {}, {}
    for override in parsed:
        value = distribution(override)
        name = override.get_key_element()
        if isinstance(value, BaseDistribution):
            space[name] = value
        else:
            fixed[name] = value
    return space, fixed

"""Every callback config, composed with the train config and no overrides, builds its callback with the settings
class's defaults, or names each difference as intended in a comment of the file (``# differs on purpose: ...``):
the Python API and the CLI draw the same pictures unless the config says why not."""

from __future__ import annotations

import functools
import inspect
import re
from dataclasses import fields

import pytest

from helpers import REPO

CALLBACKS = sorted(p.stem for p in (REPO / "configs" / "callbacks").glob("*.yaml"))
INTENDED = re.compile(r"^# differs on purpose: (.+)$", re.M)


@functools.cache
def _composed() -> object:
    """The train config with every callback config (one composition for all of them: Hydra is slow to start)."""
    from hydra import compose, initialize_config_dir

    from interp.config import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(config_name="train", overrides=[f"callbacks=[{','.join(CALLBACKS)}]"])


def _intended(name: str) -> set[str]:
    text = (REPO / "configs" / "callbacks" / f"{name}.yaml").read_text()
    return {key.strip() for found in INTENDED.findall(text) for key in found.split("(")[0].split(",") if key.strip()}


def _arguments(cls: type) -> set[str]:
    """The named parameters of the constructors along the class's bases (a subclass passes the run arguments on
    to ``InterpretationCallback`` as ``**options``); not ``self``, not the ``**`` catch-alls."""
    names = set()
    for base in cls.__mro__:
        if "__init__" in vars(base) and base.__module__.startswith("interp."):
            params = inspect.signature(base.__init__).parameters.values()
            names |= {p.name for p in params if p.name != "self" and p.kind is not p.VAR_KEYWORD}
    return names


@pytest.mark.parametrize("name", CALLBACKS)
def test_a_callback_config_builds_the_settings_defaults_or_says_why_not(name):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    node = _composed().callbacks[name]
    callback = instantiate(node)
    cls = type(callback)
    settings_cls = cls.Settings
    names = set(settings_cls.names())
    arguments = _arguments(cls)
    keys = set(OmegaConf.to_container(node, resolve=True)) - {"_target_"}
    assert keys <= arguments | names, f"{name}.yaml sets {sorted(keys - arguments - names)}: not settings of {cls}"
    assert isinstance(callback.settings, settings_cls)
    defaults = settings_cls()
    differ = {f.name for f in fields(defaults) if getattr(callback.settings, f.name) != getattr(defaults, f.name)}
    intended = _intended(name)
    assert intended <= names | arguments, f"{name}.yaml names {sorted(intended - names - arguments)}: no such thing"
    assert differ <= intended, f"{name}.yaml sets {sorted(differ - intended)} other than {settings_cls.__name__}()"
    unused = (intended & names) - differ
    assert not unused, f"{name}.yaml names {sorted(unused)} as differing, but they do not"


def test_the_intended_comment_is_read():
    assert INTENDED.findall("# differs on purpose: tv_weight, l1_weight (digits)\nx: 1") == [
        "tv_weight, l1_weight (digits)"
    ]


def test_every_callback_config_is_checked():
    assert CALLBACKS and all((REPO / "configs" / "callbacks" / f"{n}.yaml").is_file() for n in CALLBACKS)
    assert {
        "atlas",
        "attribution",
        "dream",
        "expressions",
        "featvis",
        "inversion",
        "panel",
        "projector",
        "topk",
    } <= set(CALLBACKS)

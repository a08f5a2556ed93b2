"""Every callback config, composed with the train config and no overrides, sets its callback's arguments to the
Python defaults, or names each difference as intended in a comment of the file (``# differs on purpose: ...``):
the Python API and the CLI draw the same pictures unless the config says why not."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from helpers import REPO

CALLBACKS = sorted(p.stem for p in (REPO / "configs" / "callbacks").glob("*.yaml"))
INTENDED = re.compile(r"^# differs on purpose: (.+)$", re.M)


def _composed(name: str) -> dict:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from interp.config import register_resolvers

    register_resolvers()
    overrides = [f"callbacks=[{name}]"]
    if name == "expressions":  # the face classifier's config: the preset that uses it
        return {}
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    node = OmegaConf.to_container(cfg.callbacks[name], resolve=True)
    assert isinstance(node, dict)
    return node


def _intended(name: str) -> set[str]:
    text = (REPO / "configs" / "callbacks" / f"{name}.yaml").read_text()
    return {key.strip() for found in INTENDED.findall(text) for key in found.split(",")}


@pytest.mark.parametrize("name", CALLBACKS)
def test_a_callback_config_matches_the_python_defaults_or_says_why_not(name):
    node = _composed(name)
    if not node:
        pytest.skip(f"{name}.yaml is composed by a preset (a face network's layer), not by the train config")
    module, _, cls_name = node.pop("_target_").rpartition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    params = inspect.signature(cls.__init__).parameters
    differ = set()
    for key, value in node.items():
        assert key in params, f"{name}.yaml sets {key}, which {cls_name} does not take"
        default = params[key].default
        if default is inspect.Parameter.empty:
            continue  # a required argument (the layer)
        if isinstance(default, tuple):
            default = list(default)
        if value != default:
            differ.add(key)
    intended = _intended(name)
    assert differ <= intended, f"{name}.yaml sets {sorted(differ - intended)} other than {cls_name}'s defaults"
    assert intended <= differ, f"{name}.yaml names {sorted(intended - differ)} as differing, but they do not"
    cls(**{k: v for k, v in node.items()})  # and it builds


def test_the_intended_comment_is_read():
    assert INTENDED.findall("# differs on purpose: tv_weight, l1_weight (digits)\nx: 1") == [
        "tv_weight, l1_weight (digits)"
    ]


def test_every_callback_config_is_checked():
    assert CALLBACKS and all((Path(REPO) / "configs" / "callbacks" / f"{n}.yaml").is_file() for n in CALLBACKS)

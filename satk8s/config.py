"""Typed step configs from `key=value` overrides, through OmegaConf (Hydra's config library).

OmegaConf checks every value against the dataclass field's type; its errors are turned into
`ConfigError`s that name the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from satk8s.errors import ConfigError

T = TypeVar("T")


def _writable(node: DictConfig) -> DictConfig:
    """Frozen dataclasses come in as read-only nodes, nested ones too; overrides must reach them."""
    OmegaConf.set_readonly(node, False)
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            _writable(child)
    return node


def _instantiate_nested(node: DictConfig, prefix: str) -> None:
    """Build every nested config first, so a field check that fails there is reported with its
    dotted path (`sampling.n`) rather than the bare field name."""
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and OmegaConf.get_type(child) is not dict:
            path = f"{prefix}{key}"
            _instantiate_nested(child, prefix=f"{path}.")
            try:
                OmegaConf.to_object(child)
            except ConfigError as err:
                if err.field.startswith(f"{path}."):  # already named by a deeper level
                    raise
                raise ConfigError(f"{path}.{err.field}", str(err).split(": ", 1)[1]) from None


def build_config(
    cls: type[T], overrides: Sequence[str] = (), base: Mapping[str, Any] | None = None
) -> T:
    """An instance of the dataclass `cls` from defaults, then `base`, then dotted overrides."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, "an override must look like key=value (e.g. sampling.n=4)")
    try:
        schema = _writable(OmegaConf.structured(cls))
        merged = OmegaConf.merge(
            schema, OmegaConf.create(dict(base or {})), OmegaConf.from_dotlist(list(overrides))
        )
        _instantiate_nested(merged, prefix="")
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(str(key), str(err).splitlines()[0]) from None

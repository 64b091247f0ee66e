"""The ``custom`` kind: any ``NodeLogic`` subclass by import path (``params.class``), built with
``params.args`` as keyword arguments. What it publishes is not known statically."""

from __future__ import annotations

import importlib
import inspect
from typing import Annotated, Any

from genki_signals.nodes.config import NodeConfig
from genki_signals.nodes.kinds import KindContext, NodeKind, Outputs
from genki_signals.nodes.logic import NodeLogic
from genki_signals.params import Field, Problem, Str, params


@params
class CustomParams:
    class_: Annotated[Str, Field(alias="class", description="'package.module:Class'")]
    args: Annotated[dict[Str, Any], Field(description="a mapping of keyword arguments")] = \
        Field(default_factory=dict)


def load_logic_class(path: str) -> type[NodeLogic]:
    """Import ``package.module:ClassName`` and check it is a NodeLogic subclass."""
    module_name, sep, class_name = path.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"class must be 'package.module:ClassName', got {path!r}")
    obj = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(obj, type) and issubclass(obj, NodeLogic)):
        raise ValueError(f"{path} is not a NodeLogic subclass")
    return obj


def _outputs(params: Any, ctx: KindContext) -> Outputs:
    """The class must import and accept ``args``."""
    try:  # imports the user's module: its top level runs now, in the validating process
        cls = load_logic_class(params.class_)
    except Exception as exc:  # noqa: BLE001 - any import failure is a problem to report
        return [Problem("params.class", f"{type(exc).__name__}: {exc}")], None
    try:
        inspect.signature(cls).bind(**params.args)
    except TypeError as exc:
        return [Problem("params.args", f"{params.class_}: {exc}")], None
    return [], None


def _build(params: Any, config: NodeConfig) -> NodeLogic:
    return load_logic_class(params.class_)(**params.args)


KIND = NodeKind(kind="custom", params=CustomParams, build=_build, inputs="optional",
                publishes=True, outputs=_outputs, order=4,
                doc="any NodeLogic subclass by import path (params.class, params.args)")

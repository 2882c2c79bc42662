"""Prefect flows and tasks that import Prefect only when a Prefect run needs them.

Importing ``prefect`` costs about a second of CPU (its settings, client schemas and analytics), which the inline
path (:func:`flows.runtime.run_flow` without a Prefect server: ``rtqa submit``, ``rtqa cases publish``) never
uses: there a flow body calls its tasks' functions directly. The flow modules therefore decorate with :func:`flow`
and :func:`task` from here instead of Prefect's:

* when ``prefect`` is already imported (a Prefect worker or ``prefect deploy`` loading an entrypoint of
  ``prefect.yaml``, the test suite, the web service after its first Prefect call), they return Prefect's own
  :class:`prefect.Flow` / :class:`prefect.Task`, built at once as ``@prefect.flow(...)`` would;
* otherwise they return a :class:`Deferred`: it holds the plain function as ``.fn`` (what the inline path calls)
  and builds the Prefect object the first time anything else is asked of it (calling it, ``.with_options``,
  ``.submit``, ``.name``, ...), importing Prefect then.

Either way ``obj.fn`` is the undecorated function and ``prefect_object(obj)`` the Prefect flow or task. For the
type checker the decorators are Prefect's, so every use is checked against Prefect's signatures.

:func:`prefect_loaded` and :func:`in_flow_run` answer without importing Prefect: no Prefect run can be under way in
a process that has not imported it.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

__all__ = ["NO_CACHE", "Deferred", "PrefectName", "flow", "in_flow_run", "prefect_loaded", "prefect_object", "task"]


def prefect_loaded() -> bool:
    """Whether this process has imported ``prefect``."""
    return "prefect" in sys.modules


def in_flow_run() -> bool:
    """Whether the caller runs inside a Prefect flow run (False, without importing Prefect, when it is not loaded)."""
    if not prefect_loaded():
        return False
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


class PrefectName:
    """A Prefect object named by module and attribute, imported when a deferred flow or task is built (an option
    value such as :data:`NO_CACHE`)."""

    def __init__(self, module: str, attribute: str) -> None:
        self.module, self.attribute = module, attribute

    def resolve(self) -> Any:
        return getattr(importlib.import_module(self.module), self.attribute)

    def __repr__(self) -> str:
        return f"{self.module}.{self.attribute}"


def _resolved(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v.resolve() if isinstance(v, PrefectName) else v for k, v in options.items()}


_building = threading.Lock()


class Deferred:
    """A Prefect flow or task not built yet: ``fn`` is the function; any other attribute, and calling it, are those
    of the Prefect object, built (and Prefect imported) on first use and kept.

    Attributes:
        fn: the undecorated function.
        kind: ``"flow"`` or ``"task"``.
        options: the decorator's keyword arguments (Prefect's, with :class:`PrefectName` values resolved when built).
    """

    def __init__(self, kind: str, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self.kind, self.fn, self.options = kind, fn, options
        self._built: Any = None
        functools.update_wrapper(self, fn)

    def prefect(self) -> Any:
        """The Prefect flow or task (built on the first call, once: callers in other threads get the same)."""
        if self._built is None:
            with _building:
                if self._built is None:
                    import prefect

                    decorator = prefect.flow if self.kind == "flow" else prefect.task
                    self._built = decorator(**_resolved(self.options))(self.fn)
        return self._built

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.prefect()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in {"_built", "kind", "fn", "options"}:
            raise AttributeError(name)
        return getattr(self.prefect(), name)

    def __repr__(self) -> str:
        return f"<deferred Prefect {self.kind} {self.fn.__module__}.{self.fn.__qualname__}>"


def prefect_object(obj: Any) -> Any:
    """The Prefect flow or task of ``obj`` (a :class:`Deferred` is built; anything else is returned as it is)."""
    return obj.prefect() if isinstance(obj, Deferred) else obj


def _decorator(kind: str, fn: Callable[..., Any] | None, options: dict[str, Any]) -> Any:
    def decorate(function: Callable[..., Any]) -> Any:
        deferred = Deferred(kind, function, options)
        return deferred.prefect() if prefect_loaded() else deferred

    return decorate if fn is None else decorate(fn)


if TYPE_CHECKING:
    from prefect import flow as flow
    from prefect import task as task
    from prefect.cache_policies import NO_CACHE as NO_CACHE
else:

    def flow(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """``@prefect.flow`` (with the same keyword arguments), deferred while Prefect is not imported."""
        return _decorator("flow", fn, options)

    def task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """``@prefect.task`` (with the same keyword arguments), deferred while Prefect is not imported."""
        return _decorator("task", fn, options)

    NO_CACHE = PrefectName("prefect.cache_policies", "NO_CACHE")
    """Prefect's ``NO_CACHE`` cache policy, as a ``cache_policy=`` option value."""

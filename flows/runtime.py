"""Where a flow's settings come from, and whether the flows this process starts run under Prefect.

Settings never travel as flow parameters (a database URL may hold a password, and Prefect stores and shows every
parameter). A flow run reads them with :func:`flow_settings`:

* a caller in the same process that chose other settings (tests, the web service) wraps the call in
  :func:`using_settings`;
* otherwise they come from the environment (``RTQA_*``). A *deployment* run (started by a Prefect worker) needs
  ``RTQA_DATABASE_URL`` and ``RTQA_DATA_DIR`` in the worker's environment: without them it stops with one line
  saying so, instead of falling back to an SQLite file in the worker's working directory (the repository).

:func:`orchestrated` tells, from ``Settings.flow_runs``, whether to run a flow as a Prefect flow run or *inline*:
the same flow body with each task's function called directly (:func:`call`), no Prefect API at all. That is the
default without a Prefect server: ``rtqa submit`` then answers in about 3 s instead of starting a temporary server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from flows.deferred import in_flow_run, prefect_loaded, prefect_object
from models.db import database_initialised, masked_url
from models.settings import Settings

__all__ = [
    "DEPLOYMENT_SETTINGS",
    "SettingsError",
    "call",
    "failed_run",
    "flow_settings",
    "in_deployment_run",
    "orchestrated",
    "prefect_server_configured",
    "require_database",
    "run_flow",
    "use_deployments",
    "using_settings",
]

DEPLOYMENT_SETTINGS = ("RTQA_DATABASE_URL", "RTQA_DATA_DIR")
"""Environment variables a Prefect worker must carry for rtqa's deployment runs."""

HOW_TO = "see the README section 'Run on a Prefect server'"

P = ParamSpec("P")
T = TypeVar("T")

_scoped: ContextVar[Settings | None] = ContextVar("rtqa_flow_settings", default=None)


class SettingsError(RuntimeError):
    """rtqa cannot run here as configured: a setting is missing or names a database that is not ready. The message
    is one line saying what to set or run."""


def prefect_server_configured() -> bool:
    """Whether a Prefect server is configured for this process (``PREFECT_API_URL`` in the environment)."""
    return bool(os.environ.get("PREFECT_API_URL"))


def orchestrated(settings: Settings) -> bool:
    """Whether flows started with ``settings`` run as Prefect flow runs (see ``Settings.flow_runs``)."""
    if settings.flow_runs == "auto":
        return prefect_server_configured()
    return settings.flow_runs == "prefect"


def use_deployments(settings: Settings) -> bool:
    """Whether work handed off by the web service (uploads, flows started by staff) goes to Prefect deployments:
    flows are :func:`orchestrated` and a server is configured (a temporary server has no deployments or workers)."""
    return orchestrated(settings) and prefect_server_configured()


@contextmanager
def using_settings(settings: Settings) -> Iterator[Settings]:
    """Make :func:`flow_settings` return ``settings`` for flows called in this context (same thread)."""
    token = _scoped.set(settings)
    try:
        yield settings
    finally:
        _scoped.reset(token)


def in_deployment_run() -> bool:
    """Whether this code runs in a flow run of a Prefect deployment (as a worker starts them; never in a process
    that has not imported Prefect)."""
    if not prefect_loaded():
        return False
    from prefect.runtime import deployment

    return deployment.id is not None


def require_database(url: str) -> None:
    """Check that the database at ``url`` exists and has rtqa's schema, without creating anything.

    Raises:
        SettingsError: one line naming the (masked) URL and what to do.
    """
    try:
        ready = database_initialised(url)
    except SQLAlchemyError as err:
        orig = getattr(err, "orig", None)
        cause = " ".join(str(orig if orig is not None else err).split())
        raise SettingsError(
            f"cannot reach the database {masked_url(url)}: {cause[:300]}; check RTQA_DATABASE_URL"
        ) from None
    if not ready:
        raise SettingsError(
            f"the database {masked_url(url)} does not exist or is not initialised: run `rtqa db init` with the same "
            f"RTQA_DATABASE_URL and RTQA_DATA_DIR ({HOW_TO})"
        )


def flow_settings() -> Settings:
    """The settings of the current flow run: those of :func:`using_settings`, else from the environment.

    Raises:
        SettingsError: a deployment run without ``RTQA_DATABASE_URL`` or ``RTQA_DATA_DIR`` in its environment, or a
            database that does not exist or has no schema.
    """
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    if in_deployment_run():
        missing = [name for name in DEPLOYMENT_SETTINGS if not os.environ.get(name)]
        if missing:
            raise SettingsError(
                f"{' and '.join(missing)} not set in the worker's environment: start the worker as "
                f"`RTQA_DATABASE_URL=... RTQA_DATA_DIR=... prefect worker start --pool rtqa` ({HOW_TO})"
            )
    settings = Settings()
    require_database(settings.resolved_database_url)
    return settings


def failed_run(err: SettingsError) -> Any:
    """A Failed state with ``err``'s one line as its message (logged once, no traceback), for a flow to return."""
    from prefect.states import Failed

    from flows.steps import logger

    logger().error("%s", err)
    return Failed(message=str(err))


def with_flow_settings(steps: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A flow body: ``steps(settings, *args, **kwargs)`` with the flow run's settings (:func:`flow_settings`), or,
    when they cannot be had, a Failed state naming what is missing (:func:`failed_run`)."""
    try:
        settings = flow_settings()
    except SettingsError as err:
        return failed_run(err)
    return steps(settings, *args, **kwargs)


def call(task: Any, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
    """Run a task: as a Prefect task run (named ``name``) inside a flow run, else its function directly (``task.fn``;
    Prefect is not imported for it)."""
    if not in_flow_run():
        return task.fn(*args, **kwargs)
    task = prefect_object(task)
    runnable = task.with_options(task_run_name=name) if name else task
    return runnable(*args, **kwargs)


def run_flow(flow: Callable[P, T], body: Callable[..., T], settings: Settings, *args: Any, **kwargs: Any) -> T:
    """Run a flow for ``settings``: ``flow(*args, **kwargs)`` as a Prefect flow run when :func:`orchestrated`, else
    ``body(settings, *args, **kwargs)`` inline (the flow's own body, tasks called directly)."""
    if orchestrated(settings):
        with using_settings(settings):
            return flow(*args, **kwargs)
    return body(settings, *args, **kwargs)

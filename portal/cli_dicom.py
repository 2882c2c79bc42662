"""``rtqa dicom``: the DICOM push receiver and the centres' AE titles.

* ``rtqa dicom serve [--port 11112] [--ae-title RTQA] [--quiet-seconds S] [--tls-cert F --tls-key F [--tls-ca F]]
  [--run-submissions]``: the C-STORE receiver (:mod:`flows.dicom_receiver`).
* ``rtqa dicom ae add AE_TITLE --provider CODE``, ``rtqa dicom ae list [--provider CODE] [--json]``,
  ``rtqa dicom ae remove AE_TITLE``: which calling AE titles may push, and for which provider (audited).
"""

from __future__ import annotations

import json
import logging
import signal
import ssl
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from models.settings import get_settings
from portal.cli_admin import JsonOption, _session
from portal.cli_errors import fail, require_initialised
from portal.cli_identity import staff_actor
from portal.cli_stages import console

dicom_app = typer.Typer(help="DICOM push: the C-STORE receiver and the centres' AE titles.", no_args_is_help=True)
ae_app = typer.Typer(help="Calling AE titles of the centres' planning systems, each registered to a provider.")
dicom_app.add_typer(ae_app, name="ae", no_args_is_help=True)

_TLS_HELP = "PEM file; also RTQA_DICOM_TLS_{}."


@dicom_app.command("serve")
def serve(
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (11112 is DICOM's registered port).")] = 11112,
    ae_title: Annotated[str, typer.Option("--ae-title", help="The receiver's own AE title.")] = "RTQA",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",
    quiet_seconds: Annotated[
        float,
        typer.Option(
            min=0,
            help="0: a study becomes a submission when its association is released; otherwise once nothing of it "
            "has arrived for this many seconds (for systems that send one case over several associations).",
        ),
    ] = 0.0,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            envvar="RTQA_DICOM_TLS_CERT", help="DICOM TLS: the receiver's certificate, " + _TLS_HELP.format("CERT")
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(envvar="RTQA_DICOM_TLS_KEY", help="DICOM TLS: its private key, " + _TLS_HELP.format("KEY")),
    ] = None,
    tls_ca: Annotated[
        Path | None,
        typer.Option(
            envvar="RTQA_DICOM_TLS_CA",
            help="DICOM TLS: CA certificates the centres' client certificates must be signed by (mutual TLS), "
            + _TLS_HELP.format("CA"),
        ),
    ] = None,
    run_submissions: Annotated[
        bool,
        typer.Option(
            help="Run new submissions' steps in this process; by default the web service (`rtqa serve`) runs them.",
        ),
    ] = False,
) -> None:
    """Receive centres' submissions by DICOM C-STORE until stopped (Ctrl-C or SIGTERM)."""
    from flows.dicom_receiver import DicomReceiver, server_tls_context
    from flows.runner import SubmissionRunner
    from models.dicom_ae import normalise_ae_title

    settings = get_settings()
    require_initialised(settings.resolved_database_url)
    own_title = normalise_ae_title(ae_title)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its per-message INFO lines drown the receiver's
    context = None
    if (tls_cert is None) != (tls_key is None):
        raise fail("DICOM TLS needs both --tls-cert and --tls-key (or neither)")
    if tls_ca is not None and tls_cert is None:
        raise fail("--tls-ca needs --tls-cert and --tls-key: the receiver must have a certificate to use TLS")
    if tls_cert is not None and tls_key is not None:
        for option, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key), ("--tls-ca", tls_ca)):
            if path is not None and not path.is_file():
                raise fail(f"{option} {path}: no such file")
        try:
            context = server_tls_context(tls_cert, tls_key, tls_ca)
        except ssl.SSLError as err:
            raise fail(f"cannot use the TLS files ({err.reason or err}); give a PEM certificate and its key") from None
    runner = SubmissionRunner(settings) if run_submissions else None
    receiver = DicomReceiver(
        settings,
        ae_title=own_title,
        host=host,
        port=port,
        quiet_seconds=quiet_seconds,
        ssl_context=context,
        runner=runner,
    )
    signal.signal(signal.SIGTERM, lambda *_: receiver.request_stop())
    if runner is not None:
        runner.start()
    try:
        receiver.start()
    except OSError as err:
        raise fail(f"cannot listen on {host}:{port} ({err.strerror or err}); choose another --port") from None
    when = f"after {quiet_seconds:g} s without new objects" if quiet_seconds else "when the association is released"
    typer.echo(
        f"receiving as {own_title} on {host}:{receiver.port}{' with TLS' if context else ''}; a study becomes a "
        f"submission {when}; Ctrl-C stops",
        err=True,
    )
    try:
        receiver.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
        if runner is not None:
            runner.stop()


@ae_app.command("add")
def ae_add(
    ae_title: Annotated[str, typer.Argument(help="The calling AE title the centre's planning system sends.")],
    provider: Annotated[str, typer.Option(help="Provider code (see `rtqa providers`).")],
) -> None:
    """Register a calling AE title to a provider (QA staff; audited)."""
    from models.dicom_ae import add_ae_title

    require_initialised(get_settings().resolved_database_url)
    with _session() as session:
        row = add_ae_title(session, ae_title=ae_title, provider_code=provider, actor=staff_actor(session))
        console.print(f"AE title {row.ae_title} registered to {provider}")


@ae_app.command("list")
def ae_list(
    provider: Annotated[str | None, typer.Option(help="Only this provider's titles.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the registered calling AE titles with their providers.

    With ``--json``: ``[{"ae_title", "provider", "provider_name", "created_by", "created_at"}]``.
    """
    from models.dicom_ae import list_ae_titles

    require_initialised(get_settings().resolved_database_url)
    with _session() as session:
        rows = list_ae_titles(session, provider_code=provider)
    if as_json:
        records = [
            {
                "ae_title": r.ae_title,
                "provider": r.provider_code,
                "provider_name": r.provider_name,
                "created_by": r.created_by,
                "created_at": r.created_at.isoformat(),
            }
            for r in rows
        ]
        typer.echo(json.dumps(records, indent=2))
        return
    table = Table("AE title", "provider", "registered by", "registered at")
    for r in rows:
        table.add_row(r.ae_title, r.provider_code, r.created_by, r.created_at.strftime("%Y-%m-%d %H:%M UTC"))
    console.print(table)


@ae_app.command("remove")
def ae_remove(ae_title: Annotated[str, typer.Argument(help="A registered calling AE title.")]) -> None:
    """Remove a calling AE title (QA staff; audited); its associations are refused from then on."""
    from models.dicom_ae import remove_ae_title

    require_initialised(get_settings().resolved_database_url)
    with _session() as session:
        provider = remove_ae_title(session, ae_title=ae_title, actor=staff_actor(session))
        console.print(f"AE title {ae_title.strip()} removed (was {provider})")

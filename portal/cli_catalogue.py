"""``rtqa`` commands for the catalogue: publishing library cases, importing cases from real DICOM, and protocols.

* ``rtqa cases publish CASE``: build a library case's reference files and register it (so centres can submit).
* ``rtqa cases import DIR --code CODE --protocol ID --stage STAGE [--technique T] [--version V]``: a real export.
* ``rtqa protocols list | validate FILE | add FILE``: protocols added or versioned without a code change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from models.settings import get_settings
from portal.cli_admin import staff_session_actor
from portal.cli_errors import require_initialised
from portal.cli_stages import console, fail

protocols_app = typer.Typer(help="Trial protocols: list, validate and add versions.", no_args_is_help=True)


def cases_publish(case: Annotated[str, typer.Argument(help="Library case id (see `rtqa cases list`).")]) -> None:
    """Build a library case's reference DICOM and register it, with its protocol's trial and stages."""
    from benchmarks.cases import CaseError, get_case
    from flows.catalogue import CatalogueError, run_publish_case

    try:
        spec = get_case(case)
    except CaseError as err:
        raise fail(str(err)) from None
    settings = get_settings()
    require_initialised(settings.resolved_database_url)
    actor = staff_session_actor()
    try:
        case_id = run_publish_case(settings, spec.case_id, actor=actor)
    except CatalogueError as err:
        raise fail(str(err)) from None
    console.print(
        f"published {spec.case_id}@{spec.version} ({spec.stage.replace('_', ' ')}, {spec.technique}): id {case_id}"
    )


def cases_import(
    source: Annotated[Path, typer.Argument(help="Folder with the exported DICOM (CT, RTSTRUCT, RTPLAN, RTDOSE).")],
    code: Annotated[str, typer.Option(help="New case code, e.g. lung-sabr-patient-07.")],
    protocol: Annotated[str, typer.Option(help="Protocol id that scores submissions to the case.")],
    stage: Annotated[
        str, typer.Option(help="outlining_benchmark, planning_benchmark or complex_treatment_dosimetry_check.")
    ],
    technique: Annotated[str | None, typer.Option(help="Technique code (default: the protocol's only one).")] = None,
    version: Annotated[str, typer.Option(help="Case version.")] = "1.0",
    title: Annotated[str | None, typer.Option(help="Title shown to centres.")] = None,
) -> None:
    """Register a case whose reference is a real (anonymised) export, after the checks a submission gets."""
    from benchmarks.protocols import ProtocolError
    from flows.case_import import CaseImportError, import_case
    from qa_checks.errors import QAChecksError

    settings = get_settings()
    if not source.is_dir():
        raise fail(f"{source}: not a folder; give the folder holding the exported DICOM files")
    require_initialised(settings.resolved_database_url)
    actor = staff_session_actor()
    try:
        imported = import_case(
            source,
            code=code,
            protocol_id=protocol,
            stage=stage,
            technique=technique,
            version=version,
            title=title,
            actor=actor,
            database_url=settings.resolved_database_url,
            data_dir=settings.data_dir,
        )
    except (CaseImportError, ProtocolError, QAChecksError) as err:
        raise fail(str(err)) from None
    what = "imported" if imported.created else "already registered:"
    console.print(
        f"{what} {imported.code}@{imported.version} ({imported.stage.label}, {imported.technique}) id "
        f"{imported.case_id}, sha256 {imported.sha256[:12]}…, in {imported.directory}"
    )


@protocols_app.command("list")
def protocols_list() -> None:
    """Shipped protocols and the versions added to the data directory."""
    from benchmarks.protocols import list_protocols
    from flows.protocol_store import added_protocols

    table = Table("id", "version", "title", "techniques", "where")
    for p in list_protocols():
        table.add_row(p.id, p.version, p.title, ", ".join(p.techniques), "shipped")
    for p in added_protocols(get_settings().data_dir):
        table.add_row(p.id, p.version, p.title, ", ".join(p.techniques), "added")
    console.print(table)


@protocols_app.command("validate")
def protocols_validate(file: Annotated[Path, typer.Argument(help="Protocol YAML file.")]) -> None:
    """Check a protocol file; prints what it holds, or every problem (file, field, value)."""
    from benchmarks.protocols import ProtocolError
    from flows.protocol_store import read_protocol_file

    try:
        p = read_protocol_file(file)
    except ProtocolError as err:
        for line in str(err).splitlines():
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2) from None
    stages = ", ".join(f"{r.stage} ({r.technique})" for r in p.required_credentials) or "none"
    console.print(f"{file}: valid protocol {p.id} version {p.version}: {p.title}")
    console.print(f"  techniques {', '.join(p.techniques)}; required stages: {stages}")


@protocols_app.command("add")
def protocols_add(file: Annotated[Path, typer.Argument(help="Protocol YAML file.")]) -> None:
    """Validate a protocol file, store it in the data directory and register its trial and stages."""
    from benchmarks.protocols import ProtocolError
    from flows.catalogue import CatalogueError, register_protocol
    from flows.protocol_store import ProtocolStoreError, add_protocol
    from models.db import create_db_engine, session_scope
    from models.stages import StageRequirementError

    settings = get_settings()
    require_initialised(settings.resolved_database_url)
    actor = staff_session_actor()
    try:
        protocol, target, created = add_protocol(file, data_dir=settings.data_dir)
    except (ProtocolError, ProtocolStoreError) as err:
        for line in str(err).splitlines():
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(2) from None
    engine = create_db_engine(settings.resolved_database_url)
    try:
        with session_scope(engine) as session:
            register_protocol(session, protocol, actor=actor)
    except (CatalogueError, StageRequirementError) as err:
        if created:
            target.unlink(missing_ok=True)
        raise fail(str(err)) from None
    finally:
        engine.dispose()
    what = "added" if created else "already present:"
    console.print(f"{what} protocol {protocol.id} version {protocol.version} ({target})")

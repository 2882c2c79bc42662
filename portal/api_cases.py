"""API routes for the benchmark cases a centre may take, and the download of what each case supplies.

Every provider may seek a credential for any technique whose protocol is registered (the technique has QA stages,
:class:`~models.tables.StageRequirement`); the cases offered are the newest published version of each case of those
techniques whose stage supplies files (outlining, planning, TPS check; the facility questionnaire is answered on
its own page). The download holds only what the stage supplies (:mod:`benchmarks.case_package`), never the
reference answers; it is built once per case version into ``<data dir>/downloads/`` and streamed from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import FileResponse
from sqlmodel import Session, col, select

from benchmarks.case_package import CasePackageError, write_case_zip
from benchmarks.case_spec import DISTRIBUTED_FILES
from flows.credentialing import REQUIRED_MODALITIES
from models.enums import QAStage
from models.settings import Settings
from models.tables import BenchmarkCase, StageRequirement, Technique
from portal.deps import CurrentUser, SessionDep

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])

DOWNLOADS_DIR_NAME = "downloads"
"""Folder under the data directory holding the built case zips (one per case version and reference hash)."""


@dataclass(frozen=True)
class CaseOffer:
    """A benchmark case a centre may take: what it receives (``supplied``) and what it sends back (``returned``),
    both as DICOM modalities."""

    code: str
    version: str
    title: str
    technique: str
    technique_name: str
    stage: QAStage
    supplied: tuple[str, ...]
    returned: tuple[str, ...]

    @property
    def download_url(self) -> str:
        return f"{router.prefix}/{self.code}/download?version={self.version}"

    @property
    def file_name(self) -> str:
        """Name of the download, ``<case>-<version>.zip``."""
        return f"{self.code}-{self.version}.zip"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "code": self.code,
            "version": self.version,
            "title": self.title,
            "technique": self.technique,
            "technique_name": self.technique_name,
            "stage": self.stage.value,
            "supplied": list(self.supplied),
            "returned": list(self.returned),
            "download_url": self.download_url,
            "file_name": self.file_name,
        }


def offered_techniques(session: Session) -> list[Technique]:
    """Techniques a provider may be credentialed for: those with QA stages registered (their protocol is), by code."""
    ids = select(StageRequirement.technique_id).where(col(StageRequirement.trial_id).is_(None))
    return list(session.exec(select(Technique).where(col(Technique.id).in_(ids)).order_by(Technique.code)).all())


def _offer(case: BenchmarkCase, technique: Technique) -> CaseOffer:
    return CaseOffer(
        code=case.case_code,
        version=case.version,
        title=case.title,
        technique=technique.code,
        technique_name=technique.name,
        stage=case.stage,
        supplied=DISTRIBUTED_FILES[case.stage.value],
        returned=REQUIRED_MODALITIES.get(case.stage, ()),
    )


def offered_cases(session: Session) -> list[CaseOffer]:
    """The newest version of every downloadable case of an offered technique, by technique, stage order, code."""
    techniques = {t.id: t for t in offered_techniques(session)}
    downloadable = [QAStage(s) for s in DISTRIBUTED_FILES]
    rows = session.exec(
        select(BenchmarkCase)
        .where(col(BenchmarkCase.stage).in_(downloadable), col(BenchmarkCase.technique_id).in_(list(techniques)))
        .order_by(col(BenchmarkCase.created_at).desc(), col(BenchmarkCase.id).desc())
    ).all()
    newest: dict[str, CaseOffer] = {}
    for case in rows:
        newest.setdefault(case.case_code, _offer(case, techniques[case.technique_id]))
    order = {stage: n for n, stage in enumerate(downloadable)}
    return sorted(newest.values(), key=lambda o: (o.technique, order[o.stage], o.code))


def find_case(session: Session, code: str, version: str | None = None) -> BenchmarkCase | None:
    """The case ``code`` at ``version``, or its newest published version (as an upload without a version takes)."""
    query = select(BenchmarkCase).where(BenchmarkCase.case_code == code)
    if version:
        query = query.where(BenchmarkCase.version == version)
    return session.exec(query.order_by(col(BenchmarkCase.created_at).desc(), col(BenchmarkCase.id).desc())).first()


def case_zip(settings: Settings, case: BenchmarkCase) -> Path:
    """The download of ``case``, built on first request (:func:`benchmarks.case_package.write_case_zip`).

    Raises:
        CasePackageError: the case's reference files are missing or incomplete.
    """
    target = (
        settings.data_dir / DOWNLOADS_DIR_NAME / f"{case.case_code}-{case.version}-{case.reference_sha256[:16]}.zip"
    )
    if not target.is_file():
        directory = Path(case.reference_path)
        if not directory.is_dir():
            raise CasePackageError(f"{directory.name}: the case folder is missing")
        write_case_zip(directory, case.stage.value, target, folder=f"{case.case_code}-{case.version}")
    return target


@router.get("")
def list_cases(user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """Benchmark cases a centre may take (newest version of each), with what it receives and sends back."""
    return {"items": [offer.as_dict() for offer in offered_cases(session)]}


@router.get(
    "/{case_code}/download",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}, "description": "The case's supplied DICOM files."}},
)
def download_case(
    case_code: str,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    version: Annotated[str | None, Query(description="Case version; default: the newest published.")] = None,
) -> FileResponse:
    """A zip named ``<case>-<version>.zip`` of what the case's stage supplies (CT; + RTSTRUCT for planning; + the
    reference RTPLAN for a TPS check); never the reference answers."""
    case = find_case(session, case_code, version)
    if case is None:
        which = f"{case_code!r}" + (f" version {version!r}" if version else "")
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no benchmark case {which}; see {router.prefix}")
    if case.stage.value not in DISTRIBUTED_FILES:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"{case_code!r} is a {case.stage.label}: it has no files to download; answer it on its page",
        )
    offered = {t.id for t in offered_techniques(session)}
    if case.technique_id not in offered:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"benchmark case {case_code!r} is not offered")
    try:
        path = case_zip(request.app.state.settings, case)
    except CasePackageError as err:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"the files of case {case_code}@{case.version} cannot be served ({err}); tell the QA team",
        ) from None
    return FileResponse(path, media_type="application/zip", filename=f"{case.case_code}-{case.version}.zip")

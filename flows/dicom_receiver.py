"""The DICOM C-STORE receiver (``rtqa dicom serve``): centres push a submission from their planning system.

An association is accepted only from a calling AE title registered to a provider (:mod:`models.dicom_ae`); any
other is rejected with A-ASSOCIATE-RJ (rejected-permanent, service-user, "calling AE title not recognised"). Every
storage SOP class is negotiated, so that an object of another class gets an explicit refusal (0x0122) instead of a
missing presentation context; C-ECHO answers for connection tests.

Each C-STORE dataset is written by pynetdicom to a temporary file as it arrives (``STORE_RECV_CHUNKED_DATASET``: no
dataset is held in memory), checked and moved into the staging area (:class:`flows.dicom_staging.Staging`); the
C-STORE response carries the check's status and an (0000,0902) *ErrorComment*. A staged study becomes ONE
submission when the association that sent it is released (no other association still sending to it), or, with a
quiet period, once no object of it has arrived for that long (a push spread over several associations). An
association that ends without a release (aborted, connection lost) is not taken in: its objects are discarded
(with a quiet period they stay, and the period decides).

The receiver runs in its own process; it hands each new submission to a :class:`flows.runner.SubmissionRunner`
when given one (``--run-submissions``), otherwise the web service's runner picks it up from the queue.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, _config, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlmodel import Session

from flows._store import engine_for
from flows.dicom_cases import CaseIndex
from flows.dicom_instances import InstanceHeader, InstanceRefusedError, PushStatus
from flows.dicom_staging import DEFAULT_MIN_FREE_BYTES, STAGING_DIR_NAME, PushReceipt, Staging
from flows.runner import SubmissionRunner
from models.dicom_ae import provider_for_ae_title, registered_ae_titles
from models.settings import Settings

__all__ = ["NO_TITLES_REGISTERED", "DicomReceiver", "server_tls_context"]

NO_TITLES_REGISTERED = "<none registered>"
"""Stands in the list of accepted calling AE titles while none is registered (an empty list would accept any)."""

RETRY_SECONDS = 60.0
"""After a failure to make a released study a submission (e.g. the database was down), how long to wait before
trying again."""

_log = logging.getLogger(__name__)


def server_tls_context(cert_file: Path, key_file: Path, ca_file: Path | None = None) -> ssl.SSLContext:
    """A TLS server context for DICOM TLS (TLS 1.2 or later) from PEM files.

    With ``ca_file`` clients must present a certificate signed by one of its CAs (mutual TLS); without it any
    client may connect over TLS and the AE title check still applies.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


class _RegisteredCallersAE(AE):
    """An AE whose accepted calling AE titles are read from the database at every association request."""

    def __init__(self, ae_title: str, database_url: str) -> None:
        super().__init__(ae_title=ae_title)
        self._database_url = database_url

    @property
    def require_calling_aet(self) -> list[str]:
        try:
            with Session(engine_for(self._database_url)) as session:
                titles = registered_ae_titles(session)
        except Exception:  # the database is out of reach: accept nobody rather than everybody
            _log.exception("cannot read the registered AE titles; refusing the association")
            titles = []
        return titles or [NO_TITLES_REGISTERED]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: list[str]) -> None:
        raise AttributeError("the accepted calling AE titles are those registered with `rtqa dicom ae add`")


@dataclass
class _Association:
    """What the receiver tracks of one accepted association."""

    calling_ae: str
    provider_code: str | None
    index: CaseIndex
    studies: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    """(provider, StudyInstanceUID) -> SOP instance UIDs received."""
    released: bool = False


class DicomReceiver:
    """A C-STORE SCP feeding :class:`flows.dicom_staging.Staging`.

    Args:
        settings: database, data directory (the staging area is ``data_dir/dicom-staging``) and upload limit.
        ae_title: the receiver's own AE title.
        host, port: where to listen (``port=0``: a free port, see :attr:`port`).
        quiet_seconds: 0 to make a study a submission when its association is released; otherwise once no object
            of it has arrived for this many seconds.
        ssl_context: DICOM TLS (see :func:`server_tls_context`); None for plain TCP.
        runner: told of each new submission (see :meth:`flows.runner.SubmissionRunner.notify`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        ae_title: str = "RTQA",
        host: str = "0.0.0.0",
        port: int = 11112,
        quiet_seconds: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
        runner: SubmissionRunner | None = None,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        max_associations: int = 10,
    ) -> None:
        if quiet_seconds < 0:
            raise ValueError(f"quiet_seconds must be 0 or more, not {quiet_seconds}")
        self.settings = settings
        self.ae_title = ae_title
        self.host = host
        self.requested_port = port
        self.quiet_seconds = quiet_seconds
        self.ssl_context = ssl_context
        self.runner = runner
        self.max_associations = max_associations
        self.staging = Staging(settings.data_dir / STAGING_DIR_NAME, settings, min_free_bytes=min_free_bytes)
        self.receipts: deque[PushReceipt] = deque(maxlen=200)
        """The latest studies finalised (newest last)."""
        self._associations: dict[Any, _Association] = {}
        self._holders: dict[tuple[str, str], int] = {}
        self._ae: AE | None = None
        self._server: Any = None
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    @property
    def database_url(self) -> str:
        return self.settings.resolved_database_url

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the system when ``port=0`` was asked for)."""
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    # --- life cycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen in background threads; studies left by a stopped receiver are taken care of first."""
        _config.STORE_RECV_CHUNKED_DATASET = True  # write each dataset to a file as it arrives
        self._recover()
        self._case_index()  # read the cases' reference files now, not during the first association
        ae = _RegisteredCallersAE(self.ae_title, self.database_url)
        ae.maximum_associations = self.max_associations
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_CONN_CLOSE, self._on_closed),
            (evt.EVT_REJECTED, self._on_rejected),
        ]
        self._ae = ae
        self._server = ae.start_server(
            (self.host, self.requested_port), block=False, evt_handlers=handlers, ssl_context=self.ssl_context
        )
        self._stop.clear()
        self._timer = threading.Thread(target=self._tick_loop, name="rtqa-dicom-quiet-period", daemon=True)
        self._timer.start()
        _log.info("DICOM receiver %s listening on %s:%s%s", self.ae_title, self.host, self.port, self._tls_note())

    def stop(self) -> None:
        """Stop listening (open associations are aborted and, without a quiet period, discarded)."""
        self._stop.set()
        if self._ae is not None:
            self._ae.shutdown()  # aborts open associations, closes the listening socket
            self._ae = None
            self._server = None
        if self._timer is not None:
            self._timer.join(5)
            self._timer = None

    def serve_forever(self) -> None:
        """:meth:`start` (unless started), wait until :meth:`request_stop` (or Ctrl-C), then :meth:`stop`."""
        if self._server is None:
            self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    def request_stop(self) -> None:
        """Make :meth:`serve_forever` return (safe from a signal handler)."""
        self._stop.set()

    def _tls_note(self) -> str:
        return " with TLS" if self.ssl_context is not None else ""

    def _recover(self) -> None:
        for name in self.staging.remove_abandoned():
            _log.warning("removed %s, left while a study was being made a submission", name)
        if self.quiet_seconds:
            return  # the quiet period decides, as for any other staged study
        for provider, study, _ in self.staging.studies():
            if not self.staging.was_released(provider, study):
                _log.warning("study %s from %s was left by an association never released; discarded", study, provider)
                self.staging.remove(provider, study)

    def _case_index(self) -> CaseIndex:
        with Session(engine_for(self.database_url)) as session:
            return CaseIndex.load(session)

    # --- association events ---------------------------------------------------------------------------------------

    def _on_established(self, event: evt.Event) -> None:
        calling = str(event.assoc.requestor.ae_title).strip()
        with Session(engine_for(self.database_url)) as session:
            provider = provider_for_ae_title(session, calling)
            code = provider.code if provider is not None else None
        self._associations[event.assoc] = _Association(calling, code, self._case_index())
        _log.info("association from %s (%s)%s", calling, code or "no provider", self._tls_note())

    def _on_rejected(self, event: evt.Event) -> None:
        _log.warning(
            "association from calling AE title %r at %s rejected",
            str(event.assoc.requestor.ae_title).strip(),
            event.assoc.requestor.address,
        )

    def _on_store(self, event: evt.Event) -> Dataset | int:
        assoc = self._associations.get(event.assoc)
        if assoc is None or assoc.provider_code is None:
            who = assoc.calling_ae if assoc else "?"
            return _status(
                InstanceRefusedError(PushStatus.NOT_AUTHORISED, f"calling AE title {who!r} is not registered")
            )
        provider = assoc.provider_code
        request = cast(C_STORE, event.request)

        def hold(header: InstanceHeader, accepted: bool) -> None:  # under the staging lock
            key = (provider, header.study_uid)
            if key not in assoc.studies:
                assoc.studies[key] = set()
                self._holders[key] = self._holders.get(key, 0) + 1
            if accepted:
                assoc.studies[key].add(header.sop_instance_uid)

        try:
            self.staging.receive(
                Path(event.dataset_path),
                provider_code=provider,
                index=assoc.index,
                sender=f"dicom:{assoc.calling_ae}",
                expected_sop_class=str(request.AffectedSOPClassUID),
                expected_sop_instance=str(request.AffectedSOPInstanceUID),
                on_study=hold,
            )
        except InstanceRefusedError as refused:
            _log.warning("C-STORE from %s refused (0x%04X): %s", assoc.calling_ae, refused.status, refused.reason)
            return _status(refused)
        return int(PushStatus.SUCCESS)

    def _on_released(self, event: evt.Event) -> None:
        assoc = self._associations.get(event.assoc)
        if assoc is not None:
            assoc.released = True

    def _on_closed(self, event: evt.Event) -> None:
        assoc = self._associations.pop(event.assoc, None)
        if assoc is None:
            return
        free: list[tuple[str, str]] = []
        with self.staging.lock:
            for key, sops in assoc.studies.items():
                self._holders[key] -= 1
                if not self._holders[key]:
                    del self._holders[key]
                if self.quiet_seconds:
                    continue
                if assoc.released:
                    self.staging.mark_released(*key)
                else:
                    _log.warning(
                        "association from %s ended without a release: its objects are discarded", assoc.calling_ae
                    )
                    self.staging.discard(*key, sops)
                if key not in self._holders:
                    free.append(key)
        for key in free:
            self._finalise(key)

    # --- making submissions ---------------------------------------------------------------------------------------

    def _finalise(self, key: tuple[str, str]) -> PushReceipt | None:
        try:
            receipt = self.staging.finalise(*key, index=self._case_index(), via="C-STORE")
        except Exception:
            _log.exception("study %s from %s: could not be made a submission; kept to try again", key[1], key[0])
            return None
        if receipt is None:
            return None
        self.receipts.append(receipt)
        if receipt.created and receipt.submission_id is not None and self.runner is not None:
            self.runner.notify(receipt.submission_id)
        return receipt

    def _tick_loop(self) -> None:
        step = min(1.0, self.quiet_seconds / 4) if self.quiet_seconds else 1.0
        while not self._stop.wait(step):
            try:
                self.tick()
            except Exception:
                _log.exception("DICOM receiver: cannot look at the staging area")

    def tick(self, now: float | None = None) -> list[PushReceipt]:
        """Finalise every staged study that no association is sending to and that has been quiet long enough
        (the quiet period; without one, a released study whose first try failed, after :data:`RETRY_SECONDS`)."""
        now = time.time() if now is None else now
        wait = self.quiet_seconds or RETRY_SECONDS
        done: list[PushReceipt] = []
        for provider, study, last in self.staging.studies():
            key = (provider, study)
            with self.staging.lock:
                held = key in self._holders
            if held or now - last < wait:
                continue
            if not self.quiet_seconds and not self.staging.was_released(provider, study):
                continue
            receipt = self._finalise(key)
            if receipt is not None:
                done.append(receipt)
        return done


def _status(refused: InstanceRefusedError) -> Dataset:
    """A C-STORE response status with its (0000,0902) ErrorComment."""
    status = Dataset()
    status.Status = int(refused.status)
    status.ErrorComment = refused.comment
    return status

"""``rtqa dicom``: AE titles registered to providers (audited), and the receiver's command line, including DICOM TLS
with certificates made here by the openssl command line and a storescu client."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from benchmarks.cases import BuiltCase
from flows.dicom_receiver import DicomReceiver, server_tls_context
from models.dicom_ae import AETitleError, add_ae_title, normalise_ae_title, provider_for_ae_title
from models.settings import Settings
from models.tables import AuditEvent, Submission
from portal.cli import app
from tests.push.conftest import AET, OTHER, OWN, simulate, storescu, wait_for_receipts

runner = CliRunner()


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "RTQA_DATABASE_URL": db_url,
        "RTQA_DATA_DIR": str(tmp_path / "data"),
        "PREFECT_HOME": str(tmp_path / "pf"),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


class TestAETitles:
    @pytest.mark.parametrize(
        ("text", "words"),
        [
            ("   ", "is empty"),
            ("A" * 17, "has 17 characters, more than 16"),
            ("TPS\\1", r"holds '\\'"),
            ("TPSé", "holds 'é'"),
        ],
    )
    def test_malformed_titles_are_refused(self, text: str, words: str) -> None:
        with pytest.raises(AETitleError, match=re.escape(words)):
            normalise_ae_title(text)

    def test_padding_is_not_significant(self, engine: Engine) -> None:
        assert normalise_ae_title("  TPS1 ") == "TPS1"
        with Session(engine) as session:
            add_ae_title(session, ae_title=" TPS1", provider_code=OWN, actor="t")
            session.commit()
            found = provider_for_ae_title(session, "TPS1      ")
            assert found is not None and found.code == OWN
            assert provider_for_ae_title(session, "tps1") is None  # AE titles are compared exactly

    def test_add_list_remove_audited(self, env: dict[str, str], engine: Engine, cli_staff: str) -> None:
        added = runner.invoke(app, ["dicom", "ae", "add", AET, "--provider", OWN])
        assert added.exit_code == 0 and f"AE title {AET} registered to {OWN}" in added.output
        again = runner.invoke(app, ["dicom", "ae", "add", AET, "--provider", OTHER])
        assert again.exit_code == 2 and f"already registered to {OWN}" in again.output
        unknown = runner.invoke(app, ["dicom", "ae", "add", "LEEDS", "--provider", "nowhere"])
        assert unknown.exit_code == 2 and "unknown provider code 'nowhere'" in unknown.output
        assert runner.invoke(app, ["dicom", "ae", "add", "LEEDS", "--provider", OTHER]).exit_code == 0
        listed = json.loads(runner.invoke(app, ["dicom", "ae", "list", "--json"]).stdout)
        assert [(r["ae_title"], r["provider"], r["created_by"]) for r in listed] == [
            ("LEEDS", OTHER, cli_staff),
            (AET, OWN, cli_staff),
        ]
        own = json.loads(runner.invoke(app, ["dicom", "ae", "list", "--provider", OWN, "--json"]).stdout)
        assert [r["ae_title"] for r in own] == [AET]
        table = runner.invoke(app, ["dicom", "ae", "list"])
        assert table.exit_code == 0 and AET in table.output and OTHER in table.output
        removed = runner.invoke(app, ["dicom", "ae", "remove", AET])
        assert removed.exit_code == 0 and f"was {OWN}" in removed.output
        gone = runner.invoke(app, ["dicom", "ae", "remove", AET])
        assert gone.exit_code == 2 and "is not registered" in gone.output
        with Session(engine) as session:
            events = session.exec(
                select(AuditEvent).where(col(AuditEvent.action).startswith("dicom_ae.")).order_by(col(AuditEvent.id))
            ).all()
        assert [(e.action, (e.after or e.before or {}).get("ae_title"), e.actor) for e in events] == [
            ("dicom_ae.added", AET, cli_staff),
            ("dicom_ae.added", "LEEDS", cli_staff),
            ("dicom_ae.removed", AET, cli_staff),
        ]


class TestServeOptions:
    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (["--tls-cert", "c.pem"], "needs both --tls-cert and --tls-key"),
            (["--tls-ca", "ca.pem"], "--tls-ca needs --tls-cert and --tls-key"),
            (["--tls-cert", "nope.pem", "--tls-key", "nope.key"], "--tls-cert nope.pem: no such file"),
            (["--ae-title", "A" * 20], "more than 16"),
        ],
    )
    def test_mistakes_are_one_line(self, env: dict[str, str], args: list[str], words: str) -> None:
        assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
        result = runner.invoke(app, ["dicom", "serve", *args])
        assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output

    def test_files_that_are_not_a_certificate(self, env: dict[str, str], tmp_path: Path) -> None:
        assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
        (tmp_path / "c.pem").write_text("not a certificate")
        result = runner.invoke(
            app, ["dicom", "serve", "--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "c.pem")]
        )
        assert result.exit_code == 2 and "cannot use the TLS files" in result.output

    def test_refused_before_the_database_is_initialised(
        self, env: dict[str, str], empty_db_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("RTQA_DATABASE_URL", empty_db_url)
        result = runner.invoke(app, ["dicom", "serve", "--port", "0"])
        assert result.exit_code == 2 and "is not initialised; run `rtqa db init`" in result.output


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away CA, and a server and a client certificate it signed (RSA 2048, for localhost / 127.0.0.1)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is not installed")
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_crt = str(d / "ca.key"), str(d / "ca.crt")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=rtqa test CA",
             "-keyout", ca_key, "-out", ca_crt)  # fmt: skip
    for name in ("server", "client"):
        key, csr, crt, ext = (str(d / f"{name}.{suffix}") for suffix in ("key", "csr", "crt", "ext"))
        Path(ext).write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", key, "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
                 "-extfile", ext, "-out", crt)  # fmt: skip
    return d


def _tls(pki: Path) -> tuple[str, ...]:
    return ("+tls", str(pki / "client.key"), str(pki / "client.crt"), "-pw", "+cf", str(pki / "ca.crt"))


def test_tls_push_with_client_certificates(
    settings: Settings, engine: Engine, registered: int, ae: str, built: BuiltCase, pki: Path, tmp_path: Path
) -> None:
    rx = DicomReceiver(
        settings,
        host="127.0.0.1",
        port=0,
        ssl_context=server_tls_context(pki / "server.crt", pki / "server.key", pki / "ca.crt"),
    )
    rx.start()
    try:
        plain = storescu(rx.port, built.rtstruct_path)
        anonymous = storescu(rx.port, built.rtstruct_path, extra=("+tla", "-ic"))
        sim = simulate(built, tmp_path / "s", "margin_mm:PTV:1")
        secure = storescu(rx.port, sim.directory, extra=_tls(pki))
        (receipt,) = wait_for_receipts(rx, 1)
    finally:
        rx.stop()
    assert plain.returncode != 0 and anonymous.returncode != 0  # no TLS, or TLS without a client certificate
    assert secure.returncode == 0, secure.stderr
    assert receipt.created and receipt.by_modality["RTSTRUCT"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_rtqa_dicom_serve_over_tls_decides_a_push_and_stops_on_sigterm(
    env: dict[str, str], engine: Engine, registered: int, ae: str, built: BuiltCase, pki: Path, tmp_path: Path
) -> None:
    """The command as an operator runs it: TLS from the RTQA_DICOM_TLS_* variables, steps run in the receiver."""
    port = _free_port()
    rtqa = Path(sys.executable).parent / "rtqa"
    tls_env = {
        f"RTQA_DICOM_TLS_{k.upper()}": str(pki / f)
        for k, f in (("cert", "server.crt"), ("key", "server.key"), ("ca", "ca.crt"))
    }
    process = subprocess.Popen(
        [str(rtqa), "dicom", "serve", "--host", "127.0.0.1", "--port", str(port), "--run-submissions"],
        env={**os.environ, **env, **tls_env},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline()]
        while "receiving as" not in lines[-1] and lines[-1] and len(lines) < 20:  # log lines come before the banner
            lines.append(process.stderr.readline())
        assert f"receiving as RTQA on 127.0.0.1:{port} with TLS" in lines[-1], lines
        threading.Thread(target=process.stderr.read, daemon=True).start()  # keep the pipe drained
        sim = simulate(built, tmp_path / "s", "margin_mm:PTV:8", "shift_mm:GTV:0,0,10")
        sent = storescu(port, sim.directory, extra=_tls(pki))
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline and status != "decided":
            time.sleep(0.5)
            with Session(engine) as session:
                sub = session.exec(select(Submission)).first()
                status = sub.status.value if sub is not None else None
        assert status == "decided"
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)

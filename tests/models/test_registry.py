"""The shipped provider registry: 52 providers in 11 networks, each provider in exactly one network."""

from __future__ import annotations

from collections import Counter

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models.registry import load_reference_data, provider_code, registry_entries, slugify, technique_entries
from models.tables import AuditEvent, CancerAlliance, Network, Provider, Technique


class TestShippedFile:
    def test_counts(self) -> None:
        networks = registry_entries()
        assert len(networks) == 11
        assert sum(len(n["providers"]) for n in networks) == 52

    def test_each_provider_in_exactly_one_network(self) -> None:
        names = Counter(name for n in registry_entries() for name in n["providers"])
        assert len(names) == 52
        assert set(names.values()) == {1}

    def test_network_sizes_as_published(self) -> None:
        # Provider counts per network in the Dec 2019 table, in its order.
        assert [len(n["providers"]) for n in registry_entries()] == [4, 6, 2, 8, 6, 6, 5, 6, 3, 3, 3]

    def test_provider_codes_unique(self) -> None:
        codes = [provider_code(name) for n in registry_entries() for name in n["providers"]]
        assert len(set(codes)) == 52
        assert provider_code("Guy's and St Thomas' NHS Foundation Trust") == "guys-and-st-thomas"
        assert provider_code("Ipswich Hospital NHS Trust") == "ipswich-hospital"
        assert slugify("  A, B & C ") == "a-b-c"

    def test_techniques(self) -> None:
        codes = {t["code"] for t in technique_entries()}
        assert codes == {"sabr_lung", "sabr_spine", "sabr_liver", "sabr_prostate", "sabr_oligomets", "srs_brain"}


class TestLoaded:
    def test_database_holds_the_registry(self, engine: Engine) -> None:
        with Session(engine) as session:
            assert len(session.exec(select(Network)).all()) == 11
            providers = session.exec(select(Provider)).all()
            assert len(providers) == 52
            network_ids = {n.id for n in session.exec(select(Network)).all()}
            assert all(p.network_id in network_ids for p in providers)
            assert len(session.exec(select(CancerAlliance)).all()) == 19
            assert len(session.exec(select(Technique)).all()) == 6

    def test_reload_adds_nothing_and_audits_nothing(self, engine: Engine) -> None:
        with Session(engine) as session:
            events = len(session.exec(select(AuditEvent)).all())
            summary = load_reference_data(session, actor="tests")
            session.commit()
            assert summary.added == 0
            assert (summary.providers, summary.networks) == (52, 11)
            assert len(session.exec(select(AuditEvent)).all()) == events

    def test_first_load_is_audited(self, engine: Engine) -> None:
        with Session(engine) as session:
            event = session.exec(select(AuditEvent).where(AuditEvent.action == "registry.loaded")).one()
            assert event.after is not None and event.after["providers"] == 52

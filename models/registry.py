"""Reference data shipped with rtqa: the provider registry and the technique list, loaded idempotently."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from sqlmodel import Session, select

from models.audit import record_audit
from models.enums import TechniqueFamily
from models.tables import CancerAlliance, Network, Provider, Technique

_TRUST_SUFFIX = re.compile(r"\s+(NHS Foundation Trust|NHS Trust)$")


class RegistryDataError(ValueError):
    """The shipped registry file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class RegistrySummary:
    """Counts after loading: what is in the database, and how many rows this load added."""

    networks: int
    providers: int
    cancer_alliances: int
    techniques: int
    added: int


def slugify(text: str) -> str:
    """A lower-case ASCII slug: 'Guy's and St Thomas'' -> 'guys-and-st-thomas'."""
    text = text.lower().replace("'", "")
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def provider_code(name: str) -> str:
    """The provider's slug: its name without the trust suffix."""
    return slugify(_TRUST_SUFFIX.sub("", name))


def _read_yaml(filename: str) -> dict[str, Any]:
    text = resources.files("models.data").joinpath(filename).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise RegistryDataError(f"models/data/{filename}: expected a mapping at the top level")
    return data


def registry_entries() -> list[dict[str, Any]]:
    """The networks in ``models/data/providers.yaml``, each with its alliances and providers, validated."""
    networks = _read_yaml("providers.yaml").get("networks")
    if not isinstance(networks, list):
        raise RegistryDataError("models/data/providers.yaml: 'networks' must be a list")
    seen: set[str] = set()
    for i, net in enumerate(networks):
        for key in ("code", "name", "cancer_alliances", "providers"):
            if key not in net:
                raise RegistryDataError(f"models/data/providers.yaml: networks[{i}] lacks '{key}'")
        for name in net["providers"]:
            if name in seen:
                raise RegistryDataError(f"models/data/providers.yaml: provider {name!r} listed twice")
            seen.add(name)
    return networks


def technique_entries() -> list[dict[str, Any]]:
    """The techniques in ``models/data/techniques.yaml``."""
    techniques = _read_yaml("techniques.yaml").get("techniques")
    if not isinstance(techniques, list):
        raise RegistryDataError("models/data/techniques.yaml: 'techniques' must be a list")
    return techniques


def load_reference_data(session: Session, *, actor: str) -> RegistrySummary:
    """Insert the shipped networks, alliances, providers and techniques that are missing; audit what was added.

    Running it again adds nothing. Existing rows are matched by code (networks, providers, techniques) or name
    (alliances) and left as they are.
    """
    added = 0
    for net in registry_entries():
        network = session.exec(select(Network).where(Network.code == net["code"])).first()
        if network is None:
            network = Network(code=net["code"], name=net["name"])
            session.add(network)
            session.flush()
            added += 1
        assert network.id is not None
        for alliance in net["cancer_alliances"]:
            if session.exec(select(CancerAlliance).where(CancerAlliance.name == alliance)).first() is None:
                session.add(CancerAlliance(name=alliance, network_id=network.id))
                added += 1
        for name in net["providers"]:
            code = provider_code(name)
            if session.exec(select(Provider).where(Provider.code == code)).first() is None:
                session.add(Provider(code=code, name=name, network_id=network.id))
                added += 1
    for tech in technique_entries():
        if session.exec(select(Technique).where(Technique.code == tech["code"])).first() is None:
            session.add(
                Technique(
                    code=tech["code"], name=tech["name"], family=TechniqueFamily(tech["family"]), site=tech["site"]
                )
            )
            added += 1
    session.flush()
    summary = RegistrySummary(
        networks=len(session.exec(select(Network)).all()),
        providers=len(session.exec(select(Provider)).all()),
        cancer_alliances=len(session.exec(select(CancerAlliance)).all()),
        techniques=len(session.exec(select(Technique)).all()),
        added=added,
    )
    if added:
        record_audit(
            session,
            actor=actor,
            action="registry.loaded",
            subject_type="registry",
            subject_id="providers",
            after={
                "networks": summary.networks,
                "providers": summary.providers,
                "cancer_alliances": summary.cancer_alliances,
                "techniques": summary.techniques,
                "added": added,
            },
        )
    return summary

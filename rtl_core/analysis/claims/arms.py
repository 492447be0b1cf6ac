"""Arms → inits: roles (``ct``, ``natural`` …), pretraining domains and named inits, for a study and its claims.

An arm map sends an arm's name (a role, ``domain:<d>`` or inits joined by ``+``; see
:class:`rtl_core.config.QuestionArm`) to its init or inits. A role is one init (:func:`study_arms`); a domain is
every init of that pretraining domain in the study (``scratch`` aside); named inits are themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rtl_core.analysis.claims.model import Claim

_ROLE_INITS = {
    "ct": ("ssl", "ct"),
    "ct_more": ("ssl", "ct"),
    "natural": ("ssl", "natural"),
    "mixed": ("ssl", "mixed"),
    "sequential": ("sequential", "ct"),
    "ct_less": ("ssl", "ct_less"),
}


def study_arms(
    inits: Sequence[str], declared: Mapping[str, str] | None = None, domains: Mapping[str, str | None] | None = None
) -> dict[str, str]:
    """Roles → our inits: ``analysis.arms`` first, then by name (``ssl:ct:*`` → ct and ct_more, ``ssl:natural:*``
    → natural, ``ssl:mixed:*`` → mixed, ``sequential:ct:*`` → sequential, ``ssl:ct_less:*`` → ct_less; SimCLR
    preferred when several methods), then, for ct and natural still open, the first other init of that pretraining
    domain (``domains``, e.g. a ``torchvision:`` init is natural)."""
    arms: dict[str, str] = {}
    by_kind: dict[tuple[str, str], list[str]] = {}
    for init in inits:
        parts = init.split(":")
        if len(parts) == 3:
            by_kind.setdefault((parts[0], parts[1]), []).append(init)

    def pick(kind: str, pool: str) -> str | None:
        found = by_kind.get((kind, pool), [])
        return next((i for i in found if i.endswith(":simclr")), found[0] if found else None)

    for role, (kind, pool) in _ROLE_INITS.items():
        init = pick(kind, pool)
        if init:
            arms[role] = init
    for role in ("ct", "natural"):
        if role not in arms:
            other = next((i for i in inits if (domains or {}).get(i) == role and i != "scratch"), None)
            if other:
                arms[role] = other
                if role == "ct":
                    arms.setdefault("ct_more", other)
    arms.update(declared or {})
    return arms


def config_arms(config) -> dict[str, str]:
    """The roles of a study's config: :func:`study_arms` over its inits, ``analysis.arms`` and init domains."""
    from rtl_core.analysis.study import init_domains

    return study_arms(config.evaluate.inits, config.analysis.arms, init_domains(config))


def claim_arms(config, claims: Sequence[Claim]) -> dict[str, tuple[str, ...]]:
    """The arm map of ``claims`` on the study of ``config``: every role of :func:`config_arms`, and each claim's
    domain and init arms (an arm that resolves to nothing is left out: its rows are ``not run``)."""
    from rtl_core.analysis.study import init_domains

    domains = init_domains(config)
    arms: dict[str, tuple[str, ...]] = {role: (init,) for role, init in config_arms(config).items()}
    for claim in claims:
        for spec in claim.specs:
            if spec is None or spec.role:
                continue
            if spec.domain:
                found = tuple(i for i in config.evaluate.inits if domains.get(i) == spec.domain and i != "scratch")
                if found:
                    arms[spec.key()] = found
            else:
                arms[spec.key()] = tuple(spec.inits or ())
    return arms


def arm_inits(arms: Mapping[str, str | Sequence[str]], name: str) -> tuple[str, ...]:
    """The inits of arm ``name`` in ``arms`` (a role map of single inits, or of init tuples); () when absent."""
    found = arms.get(name)
    if found is None:
        return ()
    return (found,) if isinstance(found, str) else tuple(found)


def add_init_hint(arm: str, claim: Claim) -> str:
    """What to change so that arm ``arm`` of ``claim`` exists in the study."""
    if arm in claim.needs:
        return f"needs {claim.needs[arm]}"
    if arm.startswith("domain:"):
        domain = arm.removeprefix("domain:")
        return (
            f"add an init of pretraining domain {domain!r} to evaluate.inits (its domain from "
            "evaluate.init_details.<init>.domain, else the init's pool)"
        )
    if arm in _ROLE_INITS:
        kind, pool = _ROLE_INITS[arm]
        return f"add '{kind}:{pool}:simclr' to evaluate.inits (or name the {arm} arm in analysis.arms)"
    return f"add {' and '.join(repr(i) for i in arm.split('+'))} to evaluate.inits"

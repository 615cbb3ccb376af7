"""The user's policy on top of the model: their own rules, sender lists and cut-offs,
read from the configuration file (see :mod:`partnercheck.settings`), and the sender memory
that ``partnercheck learn`` keeps (see :mod:`partnercheck.learning.memory`), consulted after the
config file's lists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace

from ..learning.memory import BLOCK, SenderMemory, canonical, reason
from ..reading.mail import EmailRecord
from ..reading.normalize import normalize
from ..settings import ConfigError, config_path, read_config
from ..understanding.rules import RuleHit, RulesError, RuleSet, load_rules
from .verdict import Thresholds


@dataclass
class Policy:
    """What the user decided on top of the model: own rules, sender lists, cut-offs."""

    rules: RuleSet | None = None
    allow: frozenset[str] = field(default_factory=frozenset)
    block: frozenset[str] = field(default_factory=frozenset)
    thresholds: dict[str, float] | None = None  # the cut-offs the config file sets; the model has the others
    memory: SenderMemory = field(default_factory=SenderMemory)

    def cut_offs(self, model: Thresholds) -> Thresholds:
        """The model's cut-offs, with those the config file sets instead."""
        return replace(model, **self.thresholds) if self.thresholds else model

    def user_hits(self, record: EmailRecord, sentences: bool = True) -> list[RuleHit]:
        if not self.rules:
            return []
        return self.rules.match(normalize(record.subject), normalize(record.body + "\n" + record.signature),
                                sentences)

    def sender_list(self, record: EmailRecord) -> str | None:
        """``"block"``, ``"allow"`` or ``None`` for the record's sender."""
        address = canonical(record.from_addr)
        if not address:
            return None
        if _listed(address, self.block):
            return "block"
        if _listed(address, self.allow):
            return "allow"
        entry = self.memory.lookup(address)
        return entry.kind if entry is not None else None

    def sender_reason(self, record: EmailRecord, label: str, scores: dict[str, float],
                      decided_by: str | None) -> str | None:
        """What decided a verdict, saying so when the sender memory did: a learned block
        made it pitch, or a learned allow kept the model's top label, pitch, from it."""
        address = canonical(record.from_addr)
        if not self.memory or not address or _listed(address, self.block) or _listed(address, self.allow):
            return decided_by
        entry = self.memory.lookup(address)
        if entry is None:
            return decided_by
        if entry.kind == BLOCK or (scores and max(scores, key=scores.get) == "pitch" and label != "pitch"):
            return reason(entry)
        return decided_by


def _listed(address: str, entries: frozenset[str]) -> bool:
    if not entries:
        return False
    if address in entries:
        return True
    domain = address.rpartition("@")[2]
    parts = domain.split(".")
    return any(".".join(parts[i:]) in entries for i in range(len(parts)))


def load_policy(config: dict | None = None, rules_option: str | None = None, store: str | None = None) -> Policy:
    """The user's policy from the config file (and a rules file named on the command line),
    with the sender memory of ``store`` (else of the configured learning store)."""
    config = read_config() if config is None else config
    rules = None
    where: dict[str, str] = {}  # the file of each rule id
    for path in filter(None, [config.get("rules"), rules_option]):
        path = os.path.expanduser(str(path))
        if any(_same_file(path, other) for other in set(where.values())):
            continue  # --rules naming the config's own rules file again
        try:
            more = load_rules(path)
        except RulesError as exc:
            raise ConfigError(str(exc)) from None
        for rule in more.rules:
            if rule.id in where:
                raise ConfigError(f"rule {rule.id} is in both {where[rule.id]} and {path}; give one of them "
                                  "another id")
            where[rule.id] = path
        rules = more if rules is None else rules + more
    thresholds = None
    if "thresholds" in config:
        try:
            if not isinstance(config["thresholds"], dict):
                raise ValueError("it must be a table: a [thresholds] line with a key = value line for each cut-off")
            flags = [k for k, v in config["thresholds"].items() if isinstance(v, bool)]
            if flags:
                raise ValueError(f"{', '.join(flags)} must be a number, not true or false")
            values = {k: float(v) for k, v in config["thresholds"].items()}
            keys = [f.name for f in fields(Thresholds)]
            unknown = [k for k in values if k not in keys]
            if unknown:
                raise ValueError(f"unknown key {', '.join(unknown)} (the keys are {', '.join(keys)})")
            outside = [k for k, v in values.items() if not 0 <= v <= 1]  # NaN included
            if outside:
                raise ValueError(f"{', '.join(outside)} must be between 0 and 1")
            thresholds = values
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{config_path()}: bad [thresholds]: {exc}") from None
    from ..learning.corrections import StoreError, read_memory

    try:
        memory = read_memory(store, config)
    except StoreError as exc:
        raise ConfigError(str(exc)) from None
    return Policy(rules=rules, allow=_entries(config, "allow"), block=_entries(config, "block"),
                  thresholds=thresholds, memory=memory)


def _entries(config: dict, key: str) -> frozenset[str]:
    entries = config.get(key, [])
    if not isinstance(entries, list):
        raise ConfigError(f"{config_path()}: {key} must be a list of addresses and domains, like [\"a@b.example\"]")
    from ..learning.memory import sender_pattern

    patterns = [(e, sender_pattern(e) if isinstance(e, str) else None) for e in entries]
    bad = [str(e) for e, pattern in patterns if pattern is None]
    if bad:
        raise ConfigError(f"{config_path()}: {key} holds {', '.join(map(repr, bad))}, which no sender matches; "
                          "give addresses or domains (a domain counts for its sub-domains: no wildcards)")
    return frozenset(pattern for _, pattern in patterns)


def _same_file(path: str, other: str) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:
        return os.path.abspath(path) == os.path.abspath(other)

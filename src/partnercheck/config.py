"""The user's configuration: which model, their own rules, sender lists and cut-offs.

Read from ``$PARTNERCHECK_CONFIG`` if set, else ``$XDG_CONFIG_HOME/partnercheck/config.toml``
(``~/.config/partnercheck/config.toml``). Every key is optional::

    model = "~/mail/partnercheck.joblib"   # else $PARTNERCHECK_MODEL, else the shipped model
    rules = "~/mail/my-rules.toml"         # same format as the built-in rules.toml
    allow = ["ana@example.org", "trusted.example"]   # never labelled pitch
    block = ["spamvendor.example"]                   # always labelled pitch
    socket = "/run/user/1000/partnercheck.sock"      # where `serve` listens

    [thresholds]
    min_confidence = 0.6
    partnership_guard = 0.2

A list entry with an ``@`` is one address; without, a domain and all its sub-domains.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources

from .mail import EmailRecord
from .normalize import normalize
from .rules import RuleHit, RuleSet, RulesError, load_rules
from .verdict import Thresholds

MODEL_ENV = "PARTNERCHECK_MODEL"
CONFIG_ENV = "PARTNERCHECK_CONFIG"
SOCKET_ENV = "PARTNERCHECK_SOCKET"
DEFAULT_MODEL_NAME = "partnercheck.joblib"


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the file and the key."""


def config_path() -> str:
    if os.environ.get(CONFIG_ENV):
        return os.environ[CONFIG_ENV]
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "partnercheck", "config.toml")


def read_config(path: str | None = None) -> dict:
    """The configuration as a dict; an absent default file is an empty configuration."""
    path = path or config_path()
    if not os.path.exists(path):
        if path == os.environ.get(CONFIG_ENV):
            raise ConfigError(f"{path}: no such config file (named by ${CONFIG_ENV})")
        return {}
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None


def default_model_path() -> str:
    """The model shipped inside the package (models/ of a source checkout when run from one)."""
    installed = resources.files("partnercheck").joinpath("default_model", DEFAULT_MODEL_NAME)
    if installed.is_file():
        return str(installed)
    checkout = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "models", DEFAULT_MODEL_NAME)
    return os.path.normpath(checkout)


def model_path(option: str | None = None, config: dict | None = None) -> str:
    """Which model to use: the option, then $PARTNERCHECK_MODEL, the config file, the default."""
    if option:
        return option
    if os.environ.get(MODEL_ENV):
        return os.environ[MODEL_ENV]
    config = read_config() if config is None else config
    if config.get("model"):
        return os.path.expanduser(str(config["model"]))
    return default_model_path()


def socket_path(config: dict | None = None) -> str:
    """Where the classification server listens: $PARTNERCHECK_SOCKET, config, or a per-user default."""
    if os.environ.get(SOCKET_ENV):
        return os.environ[SOCKET_ENV]
    if config and config.get("socket"):
        return os.path.expanduser(str(config["socket"]))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "partnercheck.sock")
    return os.path.join(os.path.expanduser("~"), ".cache", "partnercheck", "partnercheck.sock")


@dataclass
class Policy:
    """What the user decided on top of the model: own rules, sender lists, cut-offs."""

    rules: RuleSet | None = None
    allow: frozenset[str] = field(default_factory=frozenset)
    block: frozenset[str] = field(default_factory=frozenset)
    thresholds: Thresholds | None = None

    def user_hits(self, record: EmailRecord) -> list[RuleHit]:
        if not self.rules:
            return []
        return self.rules.match(normalize(record.subject), normalize(record.body + "\n" + record.signature))

    def sender_list(self, record: EmailRecord) -> str | None:
        """``"block"``, ``"allow"`` or ``None`` for the record's sender."""
        address = record.from_addr.lower()
        if not address:
            return None
        if _listed(address, self.block):
            return "block"
        if _listed(address, self.allow):
            return "allow"
        return None


def _listed(address: str, entries: frozenset[str]) -> bool:
    if not entries:
        return False
    if address in entries:
        return True
    domain = address.rpartition("@")[2]
    parts = domain.split(".")
    return any(".".join(parts[i:]) in entries for i in range(len(parts)))


def load_policy(config: dict | None = None, rules_option: str | None = None) -> Policy:
    """The user's policy from the config file (and a rules file named on the command line)."""
    config = read_config() if config is None else config
    rules = None
    for path in filter(None, [config.get("rules"), rules_option]):
        try:
            more = load_rules(os.path.expanduser(str(path)))
        except RulesError as exc:
            raise ConfigError(str(exc)) from None
        rules = more if rules is None else rules + more
    thresholds = None
    if "thresholds" in config:
        try:
            thresholds = Thresholds(**{k: float(v) for k, v in config["thresholds"].items()})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{config_path()}: bad [thresholds]: {exc}") from None
    return Policy(
        rules=rules,
        allow=frozenset(str(e).lower() for e in config.get("allow", [])),
        block=frozenset(str(e).lower() for e in config.get("block", [])),
        thresholds=thresholds,
    )

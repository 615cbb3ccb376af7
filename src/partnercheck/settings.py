"""Where partnercheck finds its configuration, model and socket; standard library only,
because the mail-filter client reads it too.

The configuration file is ``$PARTNERCHECK_CONFIG`` if set, else
``$XDG_CONFIG_HOME/partnercheck/config.toml`` (``~/.config/partnercheck/config.toml``).
Every key is optional::

    model = "~/mail/partnercheck.model"   # else $PARTNERCHECK_MODEL, else the shipped model
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

from .errors import PartnercheckError

MODEL_ENV = "PARTNERCHECK_MODEL"
CONFIG_ENV = "PARTNERCHECK_CONFIG"
SOCKET_ENV = "PARTNERCHECK_SOCKET"
DEFAULT_MODEL_NAME = "partnercheck.model"


class ConfigError(PartnercheckError):
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
    import tomllib  # here, not at the top: the filter client only needs it when a config file exists

    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None


def default_model_path() -> str:
    """The model shipped inside the package (models/ of a source checkout when run from one)."""
    from importlib import resources

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


def default_corpus() -> str | None:
    """The labelled corpus the shipped model was trained on (installed, or data/ of a checkout)."""
    from importlib import resources

    installed = resources.files("partnercheck").joinpath("corpus")
    if installed.is_dir():
        return str(installed)
    checkout = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "data"))
    return checkout if os.path.isdir(checkout) else None

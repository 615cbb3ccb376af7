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
    store = "~/mail/partnercheck-learned.sqlite3"     # what `learn` remembers (else the data folder)

    [thresholds]
    min_confidence = 0.6
    partnership_guard = 0.2

A list entry with an ``@`` is one address; without, a domain and all its sub-domains. In a
path, ``~`` and environment variables (``$HOME``) are expanded, and a relative path is taken
from the config file's folder.
"""

from __future__ import annotations

import os

from .errors import PartnercheckError

MODEL_ENV = "PARTNERCHECK_MODEL"
CONFIG_ENV = "PARTNERCHECK_CONFIG"
SOCKET_ENV = "PARTNERCHECK_SOCKET"
STORE_ENV = "PARTNERCHECK_STORE"
STORE_NAME = "learned.sqlite3"
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
        with open(path, encoding="utf-8-sig") as handle:  # Notepad starts UTF-8 with a byte order mark
            config = tomllib.loads(handle.read())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: cannot read config: it must be UTF-8 text") from None
    return _checked(config, path)


#: The config file's keys that name a file or socket, and all the keys it may have.
_PATH_KEYS = ("model", "rules", "store", "socket", "imap_state")
_KEYS = (*_PATH_KEYS, "allow", "block", "thresholds", "imap")
#: The keys of an ``[imap.NAME]`` account that name a file.
_IMAP_PATH_KEYS = ("password_file", "ca_file")


def _checked(config: dict, path: str) -> dict:
    """``config`` if its keys are known and its paths are strings: a misspelt key or a number
    where a path goes would otherwise be ignored, or taken for a file of that name."""
    unknown = sorted(set(config) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {', '.join(unknown)} (the keys are {', '.join(_KEYS)})")
    folder = os.path.dirname(os.path.abspath(path))
    for key in _PATH_KEYS:
        if key in config and not isinstance(config[key], str):
            raise ConfigError(f'{path}: {key} must be a path in quotes, like {key} = "~/..."')
        if config.get(key):  # a relative path is the config file's neighbour, from whatever folder a command runs
            config[key] = _config_path(config[key], folder, key, path)
    accounts = config.get("imap")
    for account in accounts.values() if isinstance(accounts, dict) else ():
        for key in _IMAP_PATH_KEYS:  # the same for an account's files (imap checks their kinds)
            if isinstance(account, dict) and isinstance(account.get(key), str) and account[key]:
                account[key] = _config_path(account[key], folder, key, path)
    return config


def _config_path(value: str, folder: str, key: str, path: str) -> str:
    """A path of the config file as a file name: ``~`` and environment variables (``$HOME``,
    ``${XDG_DATA_HOME}``) expanded, relative to the config file's folder. A variable that is
    not set is an error: left as it is, it made a folder named ``$HOME`` beside the config file.
    ``re`` is imported only for a path with a ``$``: the filter reads this file on every
    message and its fast path imports no ``re``."""
    if "$" in value:
        import re

        value = os.path.expandvars(value)
        unset = re.search(r"\$(\w+|\{\w+\})", value)
        if unset:
            raise ConfigError(f"{path}: {key} names the environment variable {unset.group(0)}, which is not set")
    return os.path.join(folder, os.path.expanduser(value))


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
    personal = personal_model_path(store_path(None, config))
    if os.path.exists(personal):
        return personal
    return default_model_path()


def data_home() -> str:
    """The per-user data folder: ``$XDG_DATA_HOME``, else ``~/.local/share``."""
    return os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")


def cache_home() -> str:
    """The per-user cache folder: ``$XDG_CACHE_HOME``, else ``~/.cache``."""
    return os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")


def store_path(option: str | None = None, config: dict | None = None) -> str:
    """Where ``partnercheck learn`` keeps what it learned: the option, then $PARTNERCHECK_STORE,
    then ``store`` in the config file, then ``$XDG_DATA_HOME/partnercheck/learned.sqlite3``."""
    if option:
        return os.path.expanduser(option)
    if os.environ.get(STORE_ENV):
        return os.path.expanduser(os.environ[STORE_ENV])
    config = read_config() if config is None else config
    if config.get("store"):
        return os.path.expanduser(str(config["store"]))
    return os.path.join(data_home(), "partnercheck", STORE_NAME)


def personal_model_path(store: str) -> str:
    """The personal model trained from a store's corrections lives beside it:
    ``learned.sqlite3`` goes with ``learned.model`` (and a store named ``x.model`` with
    ``x.model.model``, so that the model never overwrites its own store)."""
    path = os.path.splitext(store)[0] + ".model"
    return store + ".model" if path == store else path


#: Where systemd keeps each user's runtime folder ($XDG_RUNTIME_DIR), by user id.
RUNTIME_DIRS = "/run/user"


def socket_path(config: dict | None = None) -> str:
    """Where the classification server listens: $PARTNERCHECK_SOCKET, config, or a per-user default."""
    if os.environ.get(SOCKET_ENV):
        return os.environ[SOCKET_ENV]
    if config and config.get("socket"):
        return os.path.expanduser(str(config["socket"]))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime and hasattr(os, "getuid"):
        # What pam_systemd sets it to: procmail, maildrop and Sieve run filters without it,
        # and would not find a server that systemd (or the user's shell) started there.
        runtime = os.path.join(RUNTIME_DIRS, str(os.getuid()))
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


STATE_ENV = "PARTNERCHECK_STATE_DIR"


def state_dir() -> str:
    """Where partnercheck keeps what it remembers between runs (what `imap` has seen):
    $PARTNERCHECK_STATE_DIR, else $XDG_STATE_HOME/partnercheck (~/.local/state/partnercheck)."""
    if os.environ.get(STATE_ENV):
        return os.environ[STATE_ENV]
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "partnercheck")


def imap_state_path(config: dict | None = None) -> str:
    """The `imap` command's memory: `imap_state = "..."` in the config file, else imap.json
    in :func:`state_dir`."""
    if config and config.get("imap_state"):
        return os.path.expanduser(str(config["imap_state"]))
    return os.path.join(state_dir(), "imap.json")

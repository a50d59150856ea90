"""Connection settings from flags, environment variables and a config file.

Precedence, highest first: command-line flags, environment variables (``DGX_HOST``,
``DGX_PORT``, ``DGX_USER``, ``DGX_KEY``, ``DGX_KNOWN_HOSTS``, ``DGX_DEST``,
``DGX_DOCKER_IMAGE``, ``DGX_CONFIG``), the config file, then defaults.

The config file is INI (a ``[dgx]`` section) or JSON (one object), with the keys
``host, port, user, key, known_hosts, dest, docker_image``. Passwords are never read
from a file, a flag or the environment: use a key, an agent, or ``--ask-password``.
"""
import configparser
import dataclasses
import getpass
import json
import os
from pathlib import Path

DEFAULT_IMAGE = "fashion-mrcnn:latest"
KEYS = ("host", "port", "user", "key", "known_hosts", "dest", "docker_image")
ENV_NAMES = {name: "DGX_" + name.upper() for name in KEYS}


class RemoteError(Exception):
    """A user-facing failure: one sentence naming the culprit and the fix (exit code 2)."""


@dataclasses.dataclass
class Settings:
    host: str = None
    port: int = 22
    user: str = None
    key: str = None
    known_hosts: str = None
    dest: str = None
    docker_image: str = None
    timeout: float = 10.0
    accept_new_host_key: bool = False
    ask_password: bool = False

    def target(self):
        """``user@host:port`` for messages."""
        return f"{self.user}@{self.host}:{self.port}"


def read_config_file(path):
    """Return a dict of the recognised keys in an INI or JSON config file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RemoteError(f"config file {path} does not exist; fix the --config path "
                          f"or the DGX_CONFIG variable.")
    text = path.read_text()
    if text.lstrip().startswith("{"):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RemoteError(f"config file {path} is not valid JSON (line {exc.lineno}: "
                              f"{exc.msg}); fix the file.") from None
    else:
        parser = configparser.ConfigParser()
        try:
            parser.read_string(text, source=str(path))
        except configparser.Error as exc:
            first = str(exc).splitlines()[0]
            raise RemoteError(f"config file {path} is not valid INI ({first}); "
                              f"fix the file.") from None
        if not parser.has_section("dgx"):
            raise RemoteError(f"config file {path} has no [dgx] section; put host, port, "
                              f"user, key, dest under a [dgx] header.")
        values = dict(parser.items("dgx"))
    if "password" in values:
        raise RemoteError(f"config file {path} contains a password; remove it and use a "
                          f"key, an ssh-agent or --ask-password instead.")
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise RemoteError(f"config file {path} has unknown key {unknown[0]!r}; the known "
                          f"keys are {', '.join(KEYS)}.")
    return values


def load_settings(flags=None, environ=None):
    """Merge flags (a dict; None values are unset) over environment over config file."""
    flags = dict(flags or {})
    environ = os.environ if environ is None else environ
    config_path = flags.get("config") or environ.get("DGX_CONFIG")
    merged = read_config_file(config_path) if config_path else {}
    for name in KEYS:
        if environ.get(ENV_NAMES[name]):
            merged[name] = environ[ENV_NAMES[name]]
        if flags.get(name) is not None:
            merged[name] = flags[name]
    settings = Settings(**{k: v for k, v in merged.items() if v is not None})
    try:
        settings.port = int(settings.port)
    except (TypeError, ValueError):
        raise RemoteError(f"port {settings.port!r} is not a number; give --port, "
                          f"DGX_PORT or 'port' in the config file as an integer.") from None
    settings.user = settings.user or getpass.getuser()
    settings.known_hosts = str(Path(settings.known_hosts or "~/.ssh/known_hosts").expanduser())
    if settings.key:
        settings.key = str(Path(settings.key).expanduser())
    for name in ("timeout", "accept_new_host_key", "ask_password"):
        if flags.get(name) is not None:
            setattr(settings, name, flags[name])
    return settings


def require(settings, *names):
    """Raise a clear error if a needed setting is missing."""
    for name in names:
        if not getattr(settings, name):
            flag = "--" + name.replace("_", "-")
            raise RemoteError(f"no {name} given; pass {flag}, set {ENV_NAMES[name]} or "
                              f"put '{name}' in the --config file.")

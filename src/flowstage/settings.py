"""The project: its root folder and `flowstage.yaml`, with environment overrides.

The root is the folder holding `flowstage.yaml` (searched upward), else the current directory.
`${ENV_VAR}` is substituted in string values; `FLOWSTAGE_STORE`, `FLOWSTAGE_CONN_<NAME>` and
`FLOWSTAGE_EXECUTOR` override the file.

The variables substituted into the store and connection URLs are secrets like the URLs
themselves: `secret_env_names` tells which, so that task processes do not inherit them.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path
from typing import Any

from msgspec import Struct, field

from flowstage.errors import DefinitionError, Problem

CONFIG_FILE = "flowstage.yaml"
STATE_DIR = ".flowstage"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_KEYS = ("store", "connections", "notifiers", "executor", "spark", "server")


class SparkSettings(Struct, frozen=True):
    """flowstage.yaml's `spark:`: the master Spark dataflows and `spark:` tasks run on, and Spark conf.

    ``conf`` values are strings as Spark takes them; the defaults flowstage adds (UTC session time
    zone, ANSI SQL, no UI for local masters) give way to what the file says.
    """

    master: str = "local[*]"
    conf: dict[str, str] = field(default_factory=dict)


_SPARK_KEYS = ("master", "conf")


class Project(Struct):
    root: Path
    store_url: str
    executor: str = "local"
    spark: SparkSettings = field(default_factory=SparkSettings)
    connections: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    config_file: Path | None = None
    #: environment variables substituted into the store or a connection URL (withheld from tasks)
    secret_env: frozenset[str] = frozenset()

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def notifier_names(self) -> list[str]:
        """The notifiers flowstage.yaml defines (what a workflow's alerts may notify)."""
        found = self.config.get("notifiers")
        return sorted(str(name) for name in found) if isinstance(found, dict) else []


def find_root(start: Path | None = None) -> tuple[Path, Path | None]:
    """The project root for `start` (a folder) and its config file, if any."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return folder, candidate
    return here, None


def _substitute(value: Any, source: Any, path: tuple[Any, ...]) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise DefinitionError([source.problem(path, f"environment variable {name} is not set")])
            return os.environ[name]

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, source, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, source, (*path, i)) for i, v in enumerate(value)]
    return value


def _refs(value: Any) -> set[str]:
    """Names of the `${ENV_VAR}` references in `value` (strings, lists, mappings)."""
    if isinstance(value, str):
        return set(_ENV_REF.findall(value))
    if isinstance(value, dict):
        return set().union(*(_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value))
    return set()


def _secret_refs(data: Any) -> frozenset[str]:
    if not isinstance(data, dict):
        return frozenset()
    return frozenset(_refs(data.get("store")) | _refs(data.get("connections")) | _refs(data.get("notifiers")))


_secret_cache_lock = threading.Lock()
_secret_cache: dict[Path, tuple[tuple[int, int], frozenset[str]]] = {}


def secret_env_names(root: Path) -> frozenset[str]:
    """The environment variables that `root`'s flowstage.yaml substitutes into its store, connection URLs or notifiers.

    Read from the file as it is now (cached while it is unchanged); an unreadable or malformed file
    names none (loading the project reports that).
    """
    path = root / CONFIG_FILE
    try:
        stat = path.stat()
    except OSError:
        return frozenset()
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _secret_cache_lock:
        cached = _secret_cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        from flowstage.files import read_definition

        names = _secret_refs(_parse_config(read_definition(path, "flowstage.yaml"), path, root / STATE_DIR).data)
    except (OSError, ValueError, DefinitionError):
        names = frozenset()
    with _secret_cache_lock:
        _secret_cache[path] = (stamp, names)
    return names


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def resolve_url(url: str, root: Path) -> str:
    """Make a relative SQLite / DuckDB file URL absolute against the project root."""
    for scheme in ("sqlite:///", "duckdb:///"):
        if url.startswith(scheme) and not url.startswith(scheme + "/"):
            rest = url[len(scheme) :]
            if rest and rest != ":memory:" and not rest.startswith(":"):
                return scheme + str(root / rest)
    return url


def load_project(start: Path | None = None, *, root: Path | None = None) -> Project:
    """Read the project around `start` (or at `root`)."""
    cfg_path: Path | None
    if root is not None:
        cfg_path = root / CONFIG_FILE
        if not cfg_path.is_file():
            cfg_path = None
        root = root.resolve()
    else:
        root, cfg_path = find_root(start)
    data: dict[str, Any] = {}
    secret_env: frozenset[str] = frozenset()
    if cfg_path is not None:
        from flowstage.files import read_definition

        text = read_definition(cfg_path, "flowstage.yaml")
        source = _parse_config(text, cfg_path, root / STATE_DIR)
        if source.data is None:
            source.data = {}
        if not isinstance(source.data, dict):
            raise DefinitionError([source.problem((), "flowstage.yaml is a mapping")])
        # every problem of the file at once, each at its key
        problems: list[Problem] = []
        for key in source.data:
            if key not in _KEYS:
                from flowstage.model.workflow import did_you_mean

                problems.append(source.problem((key,), f"unknown key '{key}'{did_you_mean(str(key), _KEYS)}"))
        secret_env = _secret_refs(source.data)
        try:
            data = _substitute(source.data, source, ())
        except DefinitionError as exc:
            problems.extend(exc.problems)
            data = {k: v for k, v in source.data.items() if k in _KEYS}
        for key in ("store", "executor"):
            if key in data and not isinstance(data[key], str):
                problems.append(source.problem((key,), f"{key}: expected a URL string"))
        conns = data.get("connections") or {}
        if not isinstance(conns, dict) or not all(isinstance(v, str) for v in conns.values()):
            problems.append(source.problem(("connections",), "connections: a mapping of names to URLs"))
            data["connections"] = {}
        try:
            spark = _spark_settings(data.get("spark"), source)
        except DefinitionError as exc:
            problems.extend(exc.problems)
        problems.extend(_server_problems(data.get("server"), source))
        if problems:
            raise DefinitionError(problems)
    else:
        spark = SparkSettings()
    store = os.environ.get("FLOWSTAGE_STORE") or data.get("store") or sqlite_url(root / STATE_DIR / "flowstage.db")
    executor = os.environ.get("FLOWSTAGE_EXECUTOR") or data.get("executor") or "local"
    connections = {"warehouse": f"duckdb:///{root / STATE_DIR / 'warehouse.duckdb'}"}
    connections.update({k: str(v) for k, v in (data.get("connections") or {}).items()})
    for key, value in os.environ.items():
        if key.startswith("FLOWSTAGE_CONN_") and value:
            connections[key[len("FLOWSTAGE_CONN_") :].lower()] = value
    return Project(
        root=root,
        store_url=resolve_url(store, root),
        executor=executor,
        spark=spark,
        connections={k: resolve_url(v, root) for k, v in connections.items()},
        config=data,
        config_file=cfg_path,
        secret_env=secret_env,
    )


class _KeptConfig:
    """flowstage.yaml's document read back from the cache: the positions, for a message, are parsed
    again only when there is a problem to point at."""

    def __init__(self, data: Any, text: str, file: str) -> None:
        self.data = data
        self._text = text
        self._file = file

    def problem(self, path: tuple[Any, ...], message: str) -> Problem:
        from flowstage.model.yamlsource import parse

        found: Problem = parse(self._text, self._file).problem(path, message)
        return found


def _parse_config(text: str, path: Path, state_dir: Path) -> Any:
    """flowstage.yaml parsed; the document is kept under ``.flowstage/cache/config/`` (when the project
    has its state folder) so that a command reading an unchanged file needs no YAML reader."""
    import hashlib
    import marshal
    import sys

    key = hashlib.sha256(f"{marshal.version}\0{sys.version}\0".encode() + text.encode()).hexdigest()
    kept = state_dir / "cache" / "config" / f"{key}.marshal"
    try:
        return _KeptConfig(marshal.loads(kept.read_bytes()), text, str(path))
    except (OSError, EOFError, ValueError, TypeError):
        pass  # not kept yet, or damaged: parsed again and kept anew
    from flowstage.model.yamlsource import parse

    source = parse(text, str(path))
    if state_dir.is_dir():
        tmp = kept.with_name(f".{key}.{os.getpid()}.tmp")
        try:
            kept.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(marshal.dumps(source.data))
            os.replace(tmp, kept)
        except (OSError, ValueError):  # a read-only project, or a value marshal cannot write
            with contextlib.suppress(OSError):
                tmp.unlink()
    return source


#: flowstage.yaml's `server:` keys, and what each must be
_SERVER_KEYS: dict[str, tuple[str, Any]] = {
    "auth": ("true or false", lambda v: isinstance(v, bool)),
    "url": ("the server's public address, e.g. https://flowstage.example.com", lambda v: isinstance(v, str) and bool(v)),
    "orphans": ("resume or fail", lambda v: v in ("resume", "fail")),
    "max_failed_logins": (
        "a whole number from 1 to 10000",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10_000,
    ),
}


def _server_problems(data: Any, source: Any) -> list[Problem]:
    """`server:` of flowstage.yaml, checked key by key."""
    if data is None:
        return []
    if not isinstance(data, dict):
        return [source.problem(("server",), f"server: a mapping with {', '.join(_SERVER_KEYS)}")]
    problems: list[Problem] = []
    for key, value in data.items():
        rule = _SERVER_KEYS.get(key)
        if rule is None:
            from flowstage.model.workflow import did_you_mean

            known = ", ".join(_SERVER_KEYS)
            message = f"unknown key '{key}' under server{did_you_mean(str(key), list(_SERVER_KEYS))}; keys: {known}"
            problems.append(source.problem(("server", key), message))
        elif not rule[1](value):
            problems.append(source.problem(("server", key), f"server.{key}: expected {rule[0]}"))
    return problems


def _spark_settings(data: Any, source: Any) -> SparkSettings:
    """`spark:` of flowstage.yaml, checked key by key (file:line:col at the key)."""
    if data is None:
        return SparkSettings()
    if not isinstance(data, dict):
        raise DefinitionError([source.problem(("spark",), "spark: a mapping with master: and conf:")])
    for key in data:
        if key not in _SPARK_KEYS:
            from flowstage.model.workflow import did_you_mean

            raise DefinitionError(
                [
                    source.problem(
                        ("spark", key),
                        f"unknown key '{key}' under spark{did_you_mean(str(key), _SPARK_KEYS)}; keys: master, conf",
                    )
                ]
            )
    master = data.get("master", SparkSettings.master)
    if not isinstance(master, str) or not master.strip():
        raise DefinitionError(
            [source.problem(("spark", "master"), 'spark.master: a Spark master URL ("local[*]", "spark://host:7077")')]
        )
    conf = data.get("conf") or {}
    if not isinstance(conf, dict):
        raise DefinitionError([source.problem(("spark", "conf"), "spark.conf: a mapping of Spark settings to values")])
    out: dict[str, str] = {}
    for key, value in conf.items():
        if isinstance(value, dict | list) or value is None:
            raise DefinitionError([source.problem(("spark", "conf", key), f"spark.conf.{key}: a string, number or boolean")])
        out[str(key)] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return SparkSettings(master=master.strip(), conf=out)

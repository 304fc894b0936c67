"""Worker-core selection: --workers LIST or the dataplane TOML config."""

from __future__ import annotations

from typing import List, Optional

from .cpus import CpuListError, parse_cpulist

try:
    import tomllib  # Python 3.11+
except ModuleNotFoundError:  # pragma: no cover - 3.10 and older
    tomllib = None


class ConfigError(ValueError):
    pass


def workers_from_config(path: str) -> List[int]:
    if tomllib is None:
        raise ConfigError("reading --config needs Python 3.11 (tomllib)")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    dp = data.get("dataplane")
    if not isinstance(dp, dict) or "workers" not in dp:
        raise ConfigError(f"{path}: no `workers` in a [dataplane] table")
    value = dp["workers"]
    if isinstance(value, list):  # tolerate workers = [2, 3, 4, 5]
        value = ",".join(str(v) for v in value)
    return parse_workers(str(value))


def parse_workers(text: str) -> List[int]:
    try:
        cpus = parse_cpulist(text, keep_order=True)
    except CpuListError as exc:
        raise ConfigError(str(exc)) from exc
    if not cpus:
        raise ConfigError(f"empty worker list {text!r}")
    return cpus


def resolve_workers(workers: Optional[str], config: Optional[str]) -> Optional[List[int]]:
    """--workers wins over --config; None when neither is given."""
    if workers:
        return parse_workers(workers)
    if config:
        return workers_from_config(config)
    return None

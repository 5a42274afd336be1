"""Option values coerced in plain Python: part of the CLI's start-up time.

typer (0.2x) coerces every option value through a pydantic ``TypeAdapter`` that it builds, per
option, on first use: for the build command's ~75 options that is ~0.2 s of every run
(importing pydantic included), while the values are only ``str``, ``int``, ``pathlib.Path``,
``bool`` or lists of ``str``. :func:`plain_coercion` gives those options a converter that
does the same conversion directly; any value it does not recognise (e.g. ``--push-retry=abc``)
is handed to typer's own coercion, so error messages stay typer's. A typer without these
internals is left alone (slower, same results).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List

try:
    from typer._coercion import RuntimeParam, build_runtime_param
except ImportError:  # pragma: no cover - another typer: nothing to speed up
    RuntimeParam = None  # type: ignore[assignment,misc]


class _Unknown(Exception):
    """The value is not one this module converts: typer's coercion decides."""


def _str(v: Any) -> str:
    if type(v) is str:
        return v
    raise _Unknown


def _bool(v: Any) -> bool:
    if type(v) is bool:
        return v
    raise _Unknown


def _int(v: Any) -> int:
    if type(v) is int:
        return v
    if type(v) is str and v.isascii():
        try:
            return int(v)
        except ValueError:
            pass
    raise _Unknown


def _path(v: Any) -> Path:
    if isinstance(v, Path):
        return v
    if type(v) is str:
        return Path(v)
    raise _Unknown


def _str_list(v: Any) -> list[str]:
    if isinstance(v, (list, tuple)) and all(type(x) is str for x in v):
        return list(v)
    raise _Unknown


_CONVERTERS: dict[Any, Callable[[Any], Any]] = {str: _str, bool: _bool, int: _int, Path: _path, List[str]: _str_list,
                                                list[str]: _str_list}

if RuntimeParam is not None:
    @dataclass(frozen=True)
    class _PlainParam(RuntimeParam):  # type: ignore[misc,valid-type]
        convert: Callable[[Any], Any] = _str
        descriptor: Any = None

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                return self.convert(value)
            except _Unknown:
                return build_runtime_param(self.descriptor)._coerce_value(value, param=param, ctx=ctx)


def _plain(descriptor: Any) -> Callable[[Any], Any] | None:
    """The converter for an option's type descriptor, or None when typer must decide."""
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or getattr(info, "parser", None) is not None:
        return None
    if getattr(info, "min", None) is not None or getattr(info, "max", None) is not None:
        return None
    try:
        convert = _CONVERTERS.get(descriptor.annotation)
    except TypeError:  # an unhashable annotation
        return None
    if convert is _path and (info.exists or info.resolve_path or info.writable or info.allow_dash
                             or not info.file_okay or not info.dir_okay or info.path_type is not None):
        return None
    return convert


def plain_coercion(command: Any) -> None:
    """Give the options of ``command`` (a command built by ``typer.main.get_command``) whose
    values are plain ``str``/``int``/``Path``/``list[str]`` a coercion without pydantic."""
    if RuntimeParam is None:
        return
    try:  # the parameters plus the help option, which click creates on first use
        params = command.get_params(command.context_class(command, **(command.context_settings or {})))
    except Exception:  # noqa: BLE001 - another click/typer: the declared options only
        params = getattr(command, "params", ())
    for p in params:
        descriptor = getattr(p, "type_descriptor", None)
        if descriptor is None or getattr(p, "_runtime_param", False) is not None:
            continue
        try:
            convert = _plain(descriptor)
        except AttributeError:
            continue
        if convert is not None:
            p._runtime_param = _PlainParam(parameter_info=descriptor.parameter_info,
                                           annotation=descriptor.annotation, convert=convert,
                                           descriptor=descriptor)

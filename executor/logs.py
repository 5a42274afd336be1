"""Logging set-up for the CLI: Kaniko's ``--verbosity`` levels and ``--log-format`` text|color|json."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator

_STAGE: contextvars.ContextVar[str] = contextvars.ContextVar("executor_stage", default="")


def counted(n: int, one: str, many: str | None = None) -> str:
    """``n`` with the noun agreeing: ``counted(1, "cache entry", "cache entries")`` -> ``"1 cache
    entry"``; ``many`` defaults to ``one + "s"``."""
    return f"{n} {one if n == 1 else (many or one + 's')}"

@contextlib.contextmanager
def stage_label(label: str) -> Iterator[None]:
    """Prefix every log line of this thread (context) with ``[label]`` while inside ("" = none)."""
    token = _STAGE.set(label)
    try:
        yield
    finally:
        _STAGE.reset(token)


def current_stage() -> str:
    """The stage label of the calling context ("" outside a stage)."""
    return _STAGE.get()


def _prefixed(record: logging.LogRecord) -> str:
    label = getattr(record, "stage", "")
    return f"[{label}] {record.getMessage()}" if label else record.getMessage()


class StageFilter(logging.Filter):
    """Stamps each record with the stage label of the context that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.stage = _STAGE.get()
        return True

LEVELS = {"trace": 5, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "warning": logging.WARNING, "error": logging.ERROR, "fatal": logging.CRITICAL, "panic": logging.CRITICAL}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: level, msg, time (RFC 3339), logger."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"level": record.levelname.lower(), "msg": record.getMessage(),
               "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)), "logger": record.name}
        if getattr(record, "stage", ""):
            out["stage"] = record.stage
        return json.dumps(out)


class TextFormatter(logging.Formatter):
    """``LEVEL message`` lines; colour on a terminal when asked."""

    COLORS = {"DEBUG": "\033[36m", "INFO": "\033[32m", "WARNING": "\033[33m", "ERROR": "\033[31m",
              "CRITICAL": "\033[31m"}

    def __init__(self, color: bool, timestamps: bool):
        super().__init__()
        self.color = color
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        level = {"WARNING": "WARN", "CRITICAL": "FATAL"}.get(record.levelname, record.levelname)
        if self.color:
            level = f"{self.COLORS.get(record.levelname, '')}{level}\033[0m"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ ", time.gmtime(record.created)) if self.timestamps else ""
        return f"{stamp}{level}[{record.name.removeprefix('executor.') or 'executor'}] {_prefixed(record)}"


def setup_logging(verbosity: str = "info", fmt: str = "color", timestamps: bool = False,
                  progress: str = "plain") -> None:
    """Configure the ``executor`` logger tree on stderr. Raises ValueError for unknown values.

    ``progress`` (``--progress``): ``plain`` logs lines (text, color or json); ``tty`` draws a
    live view instead (:mod:`executor.progress`; warnings still as lines); ``auto`` is tty when
    stderr is a terminal and ``fmt`` is not json."""
    if verbosity not in LEVELS:
        raise ValueError(f"--verbosity={verbosity}: use one of {', '.join(LEVELS)}")
    if fmt not in ("text", "color", "json"):
        raise ValueError(f"--log-format={fmt}: use text, color or json")
    from . import progress as live
    mode = live.resolve_mode(progress, fmt, sys.stderr.isatty())
    live.stop()
    logging.addLevelName(5, "TRACE")
    handler: logging.Handler
    if mode == "tty":
        handler = live.make_handler(TextFormatter(False, timestamps))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if fmt == "json" else
                             TextFormatter(fmt == "color" and sys.stderr.isatty(), timestamps))
    handler.addFilter(StageFilter())
    root = logging.getLogger("executor")
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[verbosity])
    root.propagate = False
    logging.getLogger("httpx").setLevel(logging.WARNING)

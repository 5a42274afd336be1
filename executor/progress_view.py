"""The rich live view of ``--progress=tty`` (see :mod:`executor.progress`); imported only when
the view is on, so plain and json runs never load rich."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from rich.console import Console
from rich.progress import Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

_FROM = re.compile(r"^stage (\S+)(?: AS (\S+))?: FROM (.+)$")
_PULL = re.compile(r"^pulling base image (\S+)")
#: the end of a base image's pull: its layers unpacked into the root, or stacked (overlayfs roots)
_UNPACKED = re.compile(r"^stage (\S+): (unpacked|stacked) (\d+) layers")
_LAYER = re.compile(r"^layer ([0-9a-f]+): .*?(\d+) bytes$")
_UPLOADED = re.compile(r"^uploaded blob (\S+) \((\d+) bytes\) to (\S+)")
_MOUNTED = re.compile(r"^mounted (\S+) from \S+ into (\S+)")
_PUSHED_BLOBS = re.compile(r"^pushed blobs to (\S+): (.*)$")
_PUSHED = re.compile(r"^pushed (\S+)@(sha256:[0-9a-f]+)$")
_DONE = re.compile(r"^done(?: in ([0-9.]+)s)?: (sha256:[0-9a-f]+)$")
# (not "RUN isolation: ...", the line the first RUN of a build logs when it probes its isolation)
_INSTRUCTION = re.compile(r"^(FROM|RUN|COPY|ADD|ENV|ARG|LABEL|WORKDIR|USER|EXPOSE|VOLUME|ENTRYPOINT|CMD|SHELL|"
                          r"HEALTHCHECK|ONBUILD|STOPSIGNAL|MAINTAINER)\b(?! isolation: )", re.I)


def _col(**kw: Any) -> Column:
    return Column(no_wrap=True, overflow="ellipsis", **kw)


def _text_col(**kw: Any) -> Column:
    """A column of free text: the one a narrow terminal shortens (the table only narrows
    wrappable columns before cutting every column alike, which would cut the status)."""
    return Column(no_wrap=False, overflow="ellipsis", **kw)


class _OneLineTextColumn(TextColumn):
    """A :class:`~rich.progress.TextColumn` whose text stays on one line, cut with an ellipsis
    (in a :func:`_text_col` column)."""

    def render(self, task: Task) -> Text:
        text = super().render(task)
        text.no_wrap, text.overflow = True, "ellipsis"
        return text


class _BytesColumn(ProgressColumn):
    """``1.2 MB  3.4 MB/s`` from the task's ``bytes`` field and its elapsed time."""

    def render(self, task: Task) -> Text:
        n = task.fields.get("bytes", 0)
        if not n:
            return Text("")
        elapsed = (task.finished_time if task.finished else task.elapsed) or 0
        rate = f" {_size(n / elapsed)}/s" if elapsed > 0.05 else ""
        return Text(f"{_size(n)}{rate}", style="progress.download")


def _size(n: float) -> str:
    """``950B``, ``1.2kB``, ``3.4MB``, ``1.0GB`` (decimal units, as registries and rich count)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}TB"


class ProgressHandler(logging.Handler):
    """The live view (see the module docstring). ``console`` defaults to stderr."""

    def __init__(self, console: Console | None = None, line_formatter: logging.Formatter | None = None):
        super().__init__()
        self.console = console or Console(stderr=True)
        self.line_formatter = line_formatter
        self.progress = Progress(SpinnerColumn(finished_text="[green]✓", table_column=_col(min_width=1)),
                                 _OneLineTextColumn("{task.description}", table_column=_text_col(max_width=34)),
                                 _OneLineTextColumn("{task.fields[detail]}", style="dim",
                                                    table_column=_text_col(ratio=1)),
                                 _BytesColumn(table_column=_col(min_width=15)),
                                 TimeElapsedColumn(table_column=_col(min_width=7)),
                                 TextColumn("{task.fields[status]}", table_column=_col(min_width=7)),
                                 console=self.console, redirect_stdout=False, redirect_stderr=True,
                                 refresh_per_second=8)
        self._rows: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._last_stage = ""
        self._pull_of_stage: dict[str, str] = {}
        self._closing = ""  # the ``done ...`` line, printed in full below the final view
        self._started = False
        self._stopped = False

    # -- rows
    def _row(self, key: str, description: str) -> Any:
        with self._lock:
            if key not in self._rows:
                if not self._started:
                    self._started = True
                    self.progress.start()
                self._rows[key] = self.progress.add_task(description, total=None, detail="", status="", bytes=0,
                                                         steps=0)
            return self._rows[key]

    def _update(self, key: str, description: str, **fields: Any) -> None:
        """Update row ``key`` (made when missing). A new ``status`` on a finished row (a later
        platform's blobs to the same repository, cache entries written after the push) reopens it
        until it finishes again."""
        with self._lock:
            task = self._row(key, description)
            if "status" in fields and self.progress.tasks[self._index(task)].finished:
                self.progress.update(task, total=2, completed=1)  # a new total clears the finish
            self.progress.update(task, **fields)

    def _finish(self, key: str) -> None:
        """Mark row ``key`` finished; a finished row reads ``done``, whatever it was doing."""
        with self._lock:
            task = self._rows.get(key)
            if task is not None:
                self.progress.update(task, total=1, completed=1, status="[green]done")

    def _index(self, task_id: Any) -> int:
        return next(i for i, t in enumerate(self.progress.tasks) if t.id == task_id)

    def _field(self, key: str, name: str) -> Any:
        with self._lock:
            return self.progress.tasks[self._index(self._rows[key])].fields.get(name, 0)

    def add_bytes(self, key: str, description: str, n: int) -> None:
        """Count ``n`` more bytes on row ``key`` (made when missing)."""
        with self._lock:
            self._row(key, description)
            self._update(key, description, bytes=self._field(key, "bytes") + n)

    # -- logging
    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.levelno >= logging.WARNING:
                self._print_line(record)
            self.observe(record)
        except Exception:  # a view must never break the build
            self.handleError(record)

    def print_text(self, text: str) -> None:
        """Print one line above the live view (RUN output), never over it."""
        with self._lock:
            self.console.print(Text(text), soft_wrap=True)

    def _print_line(self, record: logging.LogRecord) -> None:
        text = self.line_formatter.format(record) if self.line_formatter else record.getMessage()
        self.console.print(Text(text), soft_wrap=True)

    def observe(self, record: logging.LogRecord) -> None:
        """Update the rows from one record (see the module docstring for the lines read)."""
        msg = record.getMessage()
        label = getattr(record, "stage", "") or ""
        with self._lock:
            if m := _FROM.match(msg):
                label = label or m.group(2) or m.group(1)
                self._last_stage = label
                key = f"stage:{label}"
                self._update(key, f"stage {label}", detail=f"FROM {m.group(3)}", status="running")
                return
            skey = f"stage:{label or self._last_stage}"
            if m := _PULL.match(msg):
                name = m.group(1).split("@")[0]
                name = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
                self._update(f"pull:{name}", f"pull {name}", status="pulling")
                self._pull_of_stage[skey] = f"pull:{name}"
                return
            if m := _UNPACKED.match(msg):
                pkey = self._pull_of_stage.get(skey)
                if pkey:
                    self._update(pkey, "", detail=f"{m.group(3)} layers {m.group(2)}")
                    self._finish(pkey)
                return
            if m := _LAYER.match(msg):
                if skey in self._rows:
                    self._update(skey, "", bytes=self._field(skey, "bytes") + int(m.group(2)))
                return
            if _INSTRUCTION.match(msg) and record.name.startswith("executor.engine") and skey in self._rows:
                steps = self._field(skey, "steps") + 1
                self._update(skey, "", detail=_short(msg), steps=steps, status=f"step {steps}")
                return
            if msg.startswith("built image in") or msg.startswith("built ") and "platform images" in msg:
                for key in list(self._rows):
                    if key.startswith("stage:"):
                        steps = self._field(key, "steps")
                        self._update(key, "", detail=f"{steps} steps" if steps else "")
                        self._finish(key)
                return
            if m := _UPLOADED.match(msg):
                self.add_bytes(f"push:{m.group(3)}", f"push {m.group(3)}", int(m.group(2)))
                self._update(f"push:{m.group(3)}", "", status="pushing")
                return
            if m := _MOUNTED.match(msg):
                self._update(f"push:{m.group(2)}", f"push {m.group(2)}", status="pushing")
                return
            if m := _PUSHED_BLOBS.match(msg):
                self._update(f"push:{m.group(1)}", f"push {m.group(1)}", detail=m.group(2), status="blobs pushed")
                return
            if m := _PUSHED.match(msg):
                ref = m.group(1)
                repo = ref.split("@")[0]
                repo = repo.rsplit(":", 1)[0] if ":" in repo.rsplit("/", 1)[-1] else repo
                self._finish(f"push:{repo}")
                return
            if m := _DONE.match(msg):
                for key in list(self._rows):
                    self._finish(key)
                self._update("done", "done", detail=m.group(2)[:19])
                self._finish("done")
                self._closing = msg
                return
            if msg.startswith("wrote "):
                self._update(f"out:{msg}", msg)
                self._finish(f"out:{msg}")

    def stop(self) -> None:
        """Draw the final state and end the live view (idempotent)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if self._started:
                if self._closing:  # the run succeeded: what a row still did after its end is done too
                    for key in list(self._rows):
                        self._finish(key)
                self.progress.refresh()
                self.progress.stop()
                if self._closing:
                    self.console.print(Text(self._closing), soft_wrap=True)

    def close(self) -> None:
        self.stop()
        super().close()


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"

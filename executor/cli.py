"""The ``executor`` command line: Kaniko's flag names, so existing pipelines switch unchanged.

``executor [flags]`` builds and pushes; ``executor warm`` fills a base-image cache;
``executor index --destination REF SRC...`` joins pushed single-platform images into one index;
``executor push --tar-path FILE|--oci-layout-path DIR --destination REF`` pushes an image built earlier;
``executor cache prune --cache-repo REF --older-than DURATION`` deletes expired layer-cache entries;
``executor tekton-step`` is the kaniko-build Tekton step (params from env and args, see executor/tekton.py);
``executor version`` prints the version. Go-style ``--flag=true|false`` booleans are accepted.
"""

from __future__ import annotations

import signal
import sys
import traceback
from typing import Callable

from . import __version__
from .cliargs import normalise_argv
from .errors import UserError
from .interrupts import _interrupted, _on_signal, check_interrupted

def _run_app(*args, **kw) -> None:
    """The typer command ``app`` on ``argv`` (executor.cliapp._run_app)."""
    from .cliapp import _run_app as run_app
    run_app(*args, **kw)


def debug_requested(argv: list[str]) -> bool:
    """``--verbosity=debug|trace`` (or ``-v debug``) on the command line: print tracebacks."""
    return any(a in ("--verbosity=debug", "--verbosity=trace", "-v=debug") for a in argv) or (
        "debug" in argv and any(a in ("--verbosity", "-v") for a in argv))


def run_guarded(call: Callable[[], None], debug: bool) -> None:
    """Run a command: a UserError becomes one ``error:`` line and its exit code (with the
    traceback too when ``debug``), an interruption exit 130; the live progress view is ended
    before any error line."""
    from .progress import stop as stop_progress
    try:
        try:
            call()
            check_interrupted()
        finally:
            stop_progress()  # the live view's final state, then any error line below it
    except UserError as e:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {e}\n")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``executor`` console script.

    SIGINT and SIGTERM raise :class:`executor.errors.Interrupted`: the build stops, the RUN's
    processes are killed, placed files and secrets removed, and the process exits 130 / 143
    with ``error: interrupted``. Nothing is pushed or tagged after an interruption."""
    _interrupted.clear()
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    except ValueError:  # not the main thread (embedded use): keep the caller's handlers
        previous = {}
    try:
        try:
            _main(argv)
        except UserError as e:  # raised before a command's own guard (e.g. --cache=yes in normalise_argv)
            sys.stderr.write(f"error: {e}\n")
            sys.exit(e.exit_code)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if argv is None:  # the process ends now (console script, python -m executor)
            _fast_exit()


def _fast_exit() -> None:
    """Let the interpreter's final garbage collections skip every object alive now: the build's
    modules and objects are about to be freed with the process, and collecting them cost 50-150 ms
    of every run (measured on the no-change rebuild). Files are closed by their ``with`` blocks and
    logging is flushed at exit as before; nothing else changes."""
    import gc
    gc.freeze()


def _main(argv: list[str] | None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "version":
        print(f"executor {__version__}")
        return
    if args and args[0] == "index":
        from .index import run as run_index
        run_index(args[1:])
        return
    if args and args[0] == "push":
        from .pushcmd import run as run_push
        run_push(args[1:])
        return
    if args and args[0] == "cache":
        from .cacheprune import run as run_cache
        run_cache(args[1:])
        return
    if args and args[0] == "tekton-step":
        from .tekton import main as run_tekton_step
        run_tekton_step(args[1:])
        return
    if args and args[0] == "warm":
        from .warm import warm_app
        _run_app(warm_app, normalise_argv(args[1:]), "executor warm")
        return
    from .buildflags import KNOWN_FLAGS, parse
    notes: list[str] = []
    argv = normalise_argv(args, set(KNOWN_FLAGS), notes)
    parsed = parse(argv)
    if parsed is not None:  # the common case: no typer, no click (start-up time)
        from .buildcmd import run as run_build_command
        run_guarded(lambda: run_build_command(parsed.values, parsed.given, notes), debug_requested(argv))
        return
    from . import cliapp
    cliapp._spelling_notes[:] = notes
    _run_app(cliapp.build_app, argv, "executor")

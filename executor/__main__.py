"""``python -m executor`` is the ``executor`` CLI."""

from executor.cli import main

main()

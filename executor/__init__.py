"""executor: a daemonless, unprivileged container image builder.

Reads a Dockerfile and a build context, builds each stage in a root directory
it owns, snapshots every instruction into an OCI layer and pushes the image to
any OCI distribution registry.
"""

__version__ = "0.1.0"

# Start-up time: httpx imports its own command-line client (click, rich, pygments: ~0.1-0.2 s)
# whenever click is installed; the executor never uses it, and httpx falls back to a stub `main`
# when that import fails. Only that one submodule is affected.
import sys as _sys

_sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
del _sys

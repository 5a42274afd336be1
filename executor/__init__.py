"""executor: a daemonless, unprivileged container image builder.

Reads a Dockerfile and a build context, builds each stage in a root directory
it owns, snapshots every instruction into an OCI layer and pushes the image to
any OCI distribution registry.
"""

__version__ = "0.1.0"

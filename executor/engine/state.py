"""The mutable state of one stage while its instructions run."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..oci.image import Image

if TYPE_CHECKING:
    from ..fs.snapshot import FsIndex

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
              "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


def env_list_to_dict(env: list[str] | None) -> dict[str, str]:
    """``["K=V", ...]`` (image config Env) to an ordered dict."""
    out: dict[str, str] = {}
    for item in env or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


@dataclass
class StageState:
    """One stage being built.

    ``root``: the stage's root directory (never the host's ``/``). ``image``: config and
    layers so far. ``args``: ARGs declared in this stage (None = declared without value).
    ``cmd_set``: True once CMD was set in this stage (ENTRYPOINT then keeps it).
    ``fs_index``: the last filesystem index or None until needed. ``meta``: the global
    (before-FROM) ARG values, which an ``ARG NAME`` without a default redeclares.
    """

    index: int
    name: str | None
    root: Path
    image: Image
    args: dict[str, str | None] = field(default_factory=dict)
    cmd_set: bool = False
    fs_index: FsIndex | None = None
    used_args: set[str] = field(default_factory=set)
    meta: dict[str, str | None] = field(default_factory=dict)  # global ARGs (visible once redeclared)
    platform: str = "linux/amd64"  # os/arch[/variant] of the stage's files
    lazy: bool = False            # root not filled yet: the image's layers are only descriptors
    key: str = ""                 # cache chain key after the last step
    all_hit: bool = True          # every layer step so far came from the cache
    overlay: Any = None           # the OverlayRoot when the root is an overlay mount, else None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def config(self) -> dict:
        return self.image.container_config

    def env(self) -> dict[str, str]:
        """The stage's ENV (image config Env) as a dict."""
        return env_list_to_dict(self.config.get("Env"))

    def set_env(self, key: str, value: str) -> None:
        env = self.env()
        env[key] = value
        self.config["Env"] = [f"{k}={v}" for k, v in env.items()]

    def apply_config(self, fields) -> None:
        """Set image-config fields (a mapping; a None value deletes the field)."""
        for k, v in fields.items():
            if v is None:
                self.config.pop(k, None)
            else:
                self.config[k] = v

    def expansion_env(self) -> dict[str, str]:
        """Variables visible to word expansion: declared ARGs, overridden by ENV."""
        out = {k: v for k, v in self.args.items() if v is not None}
        out.update(self.env())
        return out

    def run_env(self, proxy_args: dict[str, str], home: str) -> dict[str, str]:
        """Environment of a RUN: ARGs (and proxy build args) then ENV, with PATH and HOME defaults."""
        out = dict(proxy_args)
        out.update({k: v for k, v in self.args.items() if v is not None})
        out.update(self.env())
        out.setdefault("PATH", DEFAULT_PATH)
        out.setdefault("HOME", home)
        return out

    @property
    def workdir(self) -> str:
        return self.config.get("WorkingDir") or "/"

    @property
    def user(self) -> str:
        return self.config.get("User") or ""

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or ["/bin/sh", "-c"])

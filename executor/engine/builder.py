"""The build loop: Dockerfile -> stages -> for each needed stage, instructions -> layers.

Data flows one way: parse, plan (which stages the target needs), build each stage in
its own root directory, and hand the final Image (config + layers with local blob
paths or source repositories) to the outputs.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform as _platform
import posixpath
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..context import Context, has_wildcard, match_sources
from ..dockerfile.ignore import DockerIgnore, find_dockerignore
from ..dockerfile.parser import Dockerfile, Instruction, Stage, parse_dockerfile, parse_flag_kv
from ..dockerfile.shell import ExpansionError, expand_heredoc, expand_word
from ..errors import BuildError, DockerfileError, RunFailed, UserError
from ..layers.writer import write_layer
from ..oci.image import Image, Layer
from ..options import BuildOptions
from ..registry.client import RegistryClient
from .steps import metadata
from .steps.add import is_git_url, open_archive, verify_file_checksum
from .steps.copy import CopySpec, copy_into_root, write_heredoc_file
from .steps.mounts import (MountError, RunMounts, default_cache_dir, drop_setup_only_dirs, parse_mount,
                              ssh_sockets)
from .steps.run import build_run_command
from ..fs.paths import clean_abs, make_dirs, resolve_in_root
from .images import BlobStore, ImageSource
from .runroot import run_in_root
from .sandbox import can_unshare_network, detect_mode
from ..fs.snapshot import ChangeSet, FsIndex
from .state import PROXY_ARGS, StageState
from .users import resolve_chown, resolve_user

log = logging.getLogger("executor.engine")

SNAPSHOT_EXCLUDE = ("proc", "sys", "dev")


@dataclass
class BuildResult:
    """The built image and where each layer's blob is (``None`` = still only in its source repo)."""

    image: Image
    store: BlobStore
    source: ImageSource
    stages_built: list[int] = field(default_factory=list)


def _host_arch() -> str:
    m = _platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}.get(m, m)


def default_platform() -> str:
    """``linux/<arch>`` of this machine in OCI terms (``linux/amd64`` here)."""
    return f"linux/{_host_arch()}"


def platform_args(platform: str) -> dict[str, str]:
    """BuildKit's automatic platform ARGs (TARGETPLATFORM, TARGETOS, ..., BUILDPLATFORM, ...)."""
    parts = platform.split("/")
    os_name, arch = parts[0], parts[1] if len(parts) > 1 else _host_arch()
    variant = parts[2] if len(parts) > 2 else ""
    build = default_platform().split("/")
    return {
        "TARGETPLATFORM": platform, "TARGETOS": os_name, "TARGETARCH": arch, "TARGETVARIANT": variant,
        "BUILDPLATFORM": default_platform(), "BUILDOS": build[0], "BUILDARCH": build[1], "BUILDVARIANT": "",
    }


class Builder:
    """Builds ``options.dockerfile`` in ``options.context`` with images pulled through ``client``."""

    def __init__(self, options: BuildOptions, client: RegistryClient, stdout=None, stderr=None):
        self.opts = options
        self.client = client
        self.stdout = stdout
        self.stderr = stderr
        self.work = Path(options.work_dir) if options.work_dir else Path(tempfile.mkdtemp(prefix="executor-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.store = BlobStore(self.work / "blobs")
        self.source = ImageSource(client=client, store=self.store, platform=options.platform)
        self.mode: str | None = None
        self.stages: dict[int, StageState] = {}
        self.used_build_args: set[str] = set()
        self.epoch = self._epoch()
        from ..cache.base_images import open_local_cache
        from .cache_driver import make_driver
        self.source.local_cache = open_local_cache(options.cache_dir, options.cache_ttl_seconds)
        self.cache = make_driver(options, client)  # None without --cache

    # ----------------------------------------------------------------- helpers
    def _epoch(self) -> int | None:
        if not self.opts.reproducible:
            return None
        if self.opts.source_date_epoch is not None:
            return self.opts.source_date_epoch
        return int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)

    def _created(self) -> str:
        """RFC 3339 UTC time for config/history: now, or SOURCE_DATE_EPOCH with --reproducible."""
        if self.epoch is not None:
            return _dt.datetime.fromtimestamp(self.epoch, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _history(self, created_by: str) -> dict:
        return {"created": self._created(), "created_by": created_by, "comment": "executor"}

    def _isolation(self) -> str:
        if self.mode is None:
            wanted = self.opts.run_isolation
            self.mode = detect_mode() if wanted == "auto" else wanted
            if self.mode == "namespace":
                log.info("RUN isolation: pivot_root into private mount/PID/UTS namespaces (/proc, /sys, /dev, resolv.conf, hosts mounted)")
            else:
                log.info("RUN isolation: plain chroot (no CAP_SYS_ADMIN to mount; basic /dev nodes created and removed)")
        return self.mode

    @staticmethod
    def _err(ins: Instruction, msg: str) -> DockerfileError:
        return DockerfileError(msg, ins.filename, ins.start_line, ins.end_line)

    def _expand(self, ins: Instruction, env: dict[str, str]):
        def expand(word: str) -> str:
            try:
                return expand_word(word, env)
            except ExpansionError as e:
                raise self._err(ins, str(e)) from None
            except RecursionError:
                raise self._err(ins, "variable substitutions (${...}) are nested too deeply") from None
        return expand

    # ----------------------------------------------------------------- planning
    def parse(self) -> Dockerfile:
        path = self.opts.dockerfile
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UserError(f"Dockerfile not found: {path} (set --dockerfile, absolute or "
                            f"relative to --context)") from None
        except IsADirectoryError:
            raise UserError(f"--dockerfile {path}: is a directory, not a Dockerfile") from None
        except OSError as e:
            raise UserError(f"--dockerfile {path}: cannot read it: {e.strerror or e}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data[:e.start].count(b"\n") + 1
            raise DockerfileError(f"Dockerfile is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})",
                                  path.name, line) from None
        df = parse_dockerfile(text, path.name)
        if "\0" in text:
            for ins in _all_instructions(df):
                if "\0" in ins.original or any("\0" in h.content for h in ins.heredocs):
                    raise self._err(ins, f"{ins.name} contains a NUL byte")
        return df

    def meta_args(self, df: Dockerfile) -> dict[str, str | None]:
        """Global ARGs (before the first FROM) with --build-arg overrides and platform ARGs."""
        env: dict[str, str | None] = dict(platform_args(self.opts.platform))
        for ins in df.meta_args:
            for name, default in ins.arg_defaults:
                if name in self.opts.build_args:
                    env[name] = self.opts.build_args[name]
                    self.used_build_args.add(name)
                elif default is not None:
                    env[name] = self._expand(ins, {k: v for k, v in env.items() if v is not None})(default)
                else:
                    env[name] = None
        self.meta_env = env
        return env

    def plan(self, df: Dockerfile, meta: dict[str, str | None]) -> tuple[int, list[int], dict[int, str]]:
        """(target index, stage indexes to build in order, expanded base of each stage)."""
        menv = {k: v for k, v in meta.items() if v is not None}
        names: dict[str, int] = {}
        bases: dict[int, str] = {}
        for st in df.stages:
            bases[st.index] = self._expand(st.from_instruction, menv)(st.base)
            if not bases[st.index].strip():
                names_used = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", st.base) or ["NAME"]
                raise self._err(st.from_instruction,
                                f"FROM {st.base}: the image name is empty ({', '.join(names_used)} not set); "
                                f"declare ARG {names_used[0]} before the first FROM and pass "
                                f"--build-arg {names_used[0]}=IMAGE, or give it a default")
            if st.name:
                names[st.name.lower()] = st.index
        if self.opts.target:
            t = self.opts.target.lower()
            if t not in names:
                known = ", ".join(sorted(names)) or "none"
                raise UserError(f"--target {self.opts.target!r}: no stage with that name (stages: {known})")
            target = names[t]
        else:
            target = df.stages[-1].index
        self.stage_names = names

        def deps(st: Stage) -> set[int]:
            out: set[int] = set()
            ref = self._stage_ref(bases[st.index], st.index)
            if ref is not None:
                out.add(ref)
            for ins in st.instructions:
                froms = list(ins.flags.get("from", [])) if ins.name in ("COPY", "ADD") else []
                if ins.name == "RUN":
                    froms += [f for f in map(_mount_from, ins.flags.get("mount", [])) if f]
                for f in froms:
                    r = self._stage_ref(self._expand(ins, menv)(f), st.index)
                    if r is not None:
                        out.add(r)
            return out

        needed: set[int] = set()
        stack = [target]
        while stack:
            i = stack.pop()
            if i in needed:
                continue
            needed.add(i)
            stack.extend(deps(df.stages[i]))
        return target, sorted(needed), bases

    def _stage_ref(self, word: str, current: int) -> int | None:
        """Index of the earlier stage ``word`` names (by name or number), else None."""
        w = word.lower()
        if w in self.stage_names and self.stage_names[w] < current:
            return self.stage_names[w]
        if w.isdigit() and int(w) < current:
            return int(w)
        return None

    # ----------------------------------------------------------------- building
    def build(self) -> BuildResult:
        """Run the whole build; returns the target stage's image. Raises UserError subclasses."""
        df = self.parse()
        meta = self.meta_args(df)
        target, order, bases = self.plan(df, meta)
        ignore_file = find_dockerignore(self.opts.context, self.opts.dockerfile)
        self.context = Context(self.opts.context, DockerIgnore.from_file(ignore_file))
        skipped = [s.index for s in df.stages if s.index not in order]
        if skipped:
            log.info("skipping stages the target does not need: %s", ", ".join(map(str, skipped)))
        remaining_refs = self._reference_counts(df, order, bases)
        for idx in order:
            stage = df.stages[idx]
            self.stages[idx] = self.build_stage(df, stage, bases[idx], meta, remaining_refs)
        unused = set(self.opts.build_args) - self.used_build_args - set(PROXY_ARGS)
        if unused:
            log.warning("build args were not consumed by any ARG: %s", ", ".join(sorted(unused)))
        final = self.stages[target]
        img = final.image
        if self.opts.labels:
            labels = dict(img.container_config.get("Labels") or {})
            labels.update(self.opts.labels)
            img.container_config["Labels"] = labels
        img.config["created"] = self._created()
        if self.cache is not None:
            self.cache.finalize(target, img, self.opts.labels)
        return BuildResult(image=img, store=self.store, source=self.source, stages_built=order)

    def _reference_counts(self, df: Dockerfile, order: list[int], bases: dict[int, str]) -> dict[int, int]:
        counts: dict[int, int] = {}
        for idx in order:
            ref = self._stage_ref(bases[idx], idx)
            if ref is not None:
                counts[ref] = counts.get(ref, 0) + 1
            for ins in df.stages[idx].instructions:
                froms = list(ins.flags.get("from", [])) if ins.name in ("COPY", "ADD") else []
                if ins.name == "RUN":  # RUN --mount=from=stage reads the stage root too: never take it over
                    froms += [_mount_from(m) for m in ins.flags.get("mount", [])]
                for f in froms:
                    r = self._stage_ref(f, idx)
                    if r is not None:
                        counts[r] = counts.get(r, 0) + 1
        return counts

    def _stage_root(self, idx: int) -> Path:
        root = self.work / "stages" / str(idx) / "rootfs"
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        os.chmod(root, 0o755)
        return root

    def _base_state(self, stage: Stage, base: str, remaining: dict[int, int]) -> StageState:
        idx = stage.index
        ref = self._stage_ref(base, idx)
        if ref is not None:
            parent = self.stages[ref]
            root = self.work / "stages" / str(idx) / "rootfs"
            root.parent.mkdir(parents=True, exist_ok=True)
            remaining[ref] -= 1
            if self.cache is not None and ref in self.cache.lazy:  # parent never unpacked: stay lazy too
                root = self._stage_root(idx)
                self.cache.lazy.add(idx)
            elif remaining[ref] == 0 and ref != idx:
                os.rename(parent.root, root)  # last user: take the directory over
                parent.root = root
            else:
                shutil.copytree(parent.root, root, symlinks=True, copy_function=shutil.copy2)
            image = parent.image.copy()
            st = StageState(index=idx, name=stage.name, root=root, image=image)
            st.fs_index = None
            return st
        root = self._stage_root(idx)
        if base.lower() == "scratch":
            os_name, arch, *rest = self._stage_platform(stage).split("/")
            image = Image.empty(os_name, arch, rest[0] if rest else None)
        else:
            log.info("pulling base image %s", base)
            image = self._source_for(stage).image(base)
            if self.cache is not None:  # unpacked only when a step misses the cache (CacheDriver.materialize)
                self.cache.lazy.add(idx)
            else:
                t0 = time.monotonic()
                self.source.unpack(image, root)
                log.info("unpacked %d layers of %s in %.2fs", len(image.layers), base, time.monotonic() - t0)
        if self.opts.compression == "zstd" and not image.oci:
            log.info("--compression=zstd: writing an OCI manifest (Docker schema 2 has no zstd layer type); "
                     "the base layers are kept and relabelled with their OCI media types")
            image.oci = True
        for key in ("container", "container_config", "docker_version", "comment"):
            image.config.pop(key, None)
        return StageState(index=idx, name=stage.name, root=root, image=image)

    def _stage_platform(self, stage: Stage) -> str:
        """``FROM --platform=...`` expanded with the global ARGs (e.g. ``$BUILDPLATFORM``), else the build's."""
        if not stage.platform:
            return self.opts.platform
        env = {k: v for k, v in getattr(self, "meta_env", {}).items() if v is not None}
        value = self._expand(stage.from_instruction, env)(stage.platform).strip()
        if len(value.split("/")) not in (2, 3) or not all(value.split("/")):
            raise self._err(stage.from_instruction, f"FROM --platform={value}: use OS/ARCH[/VARIANT], e.g. linux/arm64")
        return value

    def _source_for(self, stage: Stage) -> ImageSource:
        """The image source resolving for the stage's platform (indexes select that platform's manifest)."""
        platform = self._stage_platform(stage)
        if platform == self.opts.platform:
            return self.source
        sources = self.__dict__.setdefault("platform_sources", {})
        if platform not in sources:
            sources[platform] = ImageSource(client=self.client, store=self.store, platform=platform,
                                            local_cache=self.source.local_cache)
        return sources[platform]

    def build_stage(self, df: Dockerfile, stage: Stage, base: str, meta: dict[str, str | None],
                    remaining: dict[int, int]) -> StageState:
        log.info("stage %d%s: FROM %s", stage.index, f" AS {stage.name}" if stage.name else "", base)
        state = self._base_state(stage, base, remaining)
        if self.cache is not None:
            self.cache.start_stage(self, state, base, self._stage_ref(base, stage.index))
        state.meta = meta
        instructions = list(stage.instructions)
        triggers = state.config.pop("OnBuild", None) or []
        if triggers:
            onbuild = parse_dockerfile("FROM scratch\n" + "\n".join(triggers) + "\n", f"{base} (ONBUILD)")
            instructions = onbuild.stages[0].instructions + instructions
        for ins in instructions:
            self.execute(state, ins)
        return state

    def execute(self, state: StageState, ins: Instruction) -> None:
        """Run one instruction on ``state`` (through the layer cache with ``--cache``)."""
        log.info("%s", shorten(ins.original))
        try:
            if self.cache is not None:
                self.cache.execute(self, state, ins, self._execute)
            else:
                self._execute(state, ins)
        except OSError as e:
            # an OS error below the instruction level (e.g. WORKDIR through a dangling symlink):
            # name the line and the path inside the image, not a traceback
            where = str(e.filename) if e.filename else ""
            root = str(state.root)
            if where == root or where.startswith(root + os.sep):
                where = "/" + os.path.relpath(where, root).lstrip(".").lstrip("/")
            raise BuildError(f"{ins.filename}:{ins.start_line}: {ins.name}: {e.strerror or e}"
                             + (f": {where}" if where else "")) from e
        except BuildError as e:
            if str(e).startswith(f"{ins.filename}:"):
                raise
            # name the Dockerfile line for errors raised below the instruction level
            raise BuildError(f"{ins.filename}:{ins.start_line}: {ins.name}: {e}") from e

    def _execute(self, state: StageState, ins: Instruction) -> None:
        name = ins.name
        expand = self._expand(ins, state.expansion_env())
        if name == "ARG":
            self.do_arg(state, ins)
            state.image.add_history(self._history(f"ARG {' '.join(n if d is None else f'{n}={d}' for n, d in ins.arg_defaults)}"))
            return
        if name in metadata.HANDLERS:
            metadata.HANDLERS[name](state, ins, expand)
            state.image.add_history(self._history(self._created_by(ins)))
            return
        if name == "WORKDIR":
            self.do_workdir(state, ins, expand)
            return
        if name == "RUN":
            self.do_run(state, ins)
            return
        if name in ("COPY", "ADD"):
            self.do_copy(state, ins, expand)
            return
        raise self._err(ins, f"unknown instruction {name}")

    @staticmethod
    def _created_by(ins: Instruction) -> str:
        return ins.original.strip()

    # ----------------------------------------------------------------- ARG
    def do_arg(self, state: StageState, ins: Instruction) -> None:
        meta = state.meta
        for name, default in ins.arg_defaults:
            if name in self.opts.build_args:
                value: str | None = self.opts.build_args[name]
                self.used_build_args.add(name)
            elif default is not None:
                value = self._expand(ins, state.expansion_env())(default)
            elif name in meta:
                value = meta[name]
            else:
                value = None
            state.args[name] = value

    # ----------------------------------------------------------------- snapshot
    def _index(self, state: StageState) -> FsIndex:
        if state.fs_index is None:
            state.fs_index = FsIndex.scan(state.root, exclude=self._exclude())
        return state.fs_index

    def _exclude(self) -> list[str]:
        return list(SNAPSHOT_EXCLUDE) + [p.strip("/") for p in self.opts.ignore_paths]

    def commit_layer(self, state: StageState, changes: ChangeSet, created_by: str) -> None:
        """Write ``changes`` as a layer (or an empty_layer history entry when nothing changed)."""
        if changes.is_empty():
            state.image.add_history(self._history(created_by))
            return
        tmp = self.store.tmp_path(f"layer-{os.getpid()}-{time.monotonic_ns()}")
        res = write_layer(state.root, changes, tmp, compression=self.opts.compression,
                          level=self.opts.compression_level, oci=state.image.oci, mtime=self.epoch)
        path = self.store.adopt(tmp, res.digest)
        desc = {"mediaType": res.media_type, "digest": res.digest, "size": res.size}
        state.image.add_layer(Layer(descriptor=desc, diff_id=res.diff_id, path=path), self._history(created_by))
        log.info("layer %s: %d paths changed, %d deleted, %d bytes", res.digest[7:19], len(changes.changed),
                 len(changes.deleted), res.size)

    # ----------------------------------------------------------------- WORKDIR
    def do_workdir(self, state: StageState, ins: Instruction, expand) -> None:
        path = clean_abs(expand(ins.args[0]), state.workdir).rstrip("/") or "/"
        state.config["WorkingDir"] = path
        written = self._ensure_dir(state, path)
        if written:
            self.commit_layer(state, ChangeSet(changed=tuple(written), deleted=()), self._created_by(ins))
            self._index(state).update(state.root, written)
        else:
            state.image.add_history(self._history(self._created_by(ins)))

    def _ensure_dir(self, state: StageState, path: str) -> list[str]:
        """Create ``path`` (and parents) in the root owned by the stage USER; returns new relpaths."""
        host = resolve_in_root(state.root, path)
        if host.is_dir():
            return []
        ident = resolve_user(state.root, state.user) if state.user else None
        uid, gid = (ident.uid, ident.gid) if ident else (0, 0)
        return make_dirs(state.root, path, uid, gid, f"WORKDIR {path}")

    # ----------------------------------------------------------------- RUN
    def do_run(self, state: StageState, ins: Instruction) -> None:
        mode = self._isolation()
        before = self._index(state)
        ident = resolve_user(state.root, state.user)
        proxy = {k: v for k, v in self.opts.build_args.items() if k in PROXY_ARGS}
        env = state.run_env(proxy, ident.home or "/")
        cmd = build_run_command(state, ins)
        network = (ins.flags.get("network") or ["default"])[-1]
        if network not in ("default", "none", "host"):
            raise self._err(ins, f"RUN --network={network}: use default, none or host")
        if network == "none" and mode == "chroot" and not can_unshare_network():
            raise self._err(ins, "RUN --network=none needs a network namespace, which this environment does not "
                                 "allow (no CAP_SYS_ADMIN); remove --network=none or run the executor with "
                                 "CAP_SYS_ADMIN")
        workdir = state.workdir
        self._ensure_dir_for_run(state, workdir)
        files = {cmd.argv[0]: cmd.script} if cmd.script is not None else None
        scratch = self.work / "run"
        scratch.mkdir(exist_ok=True)
        mounts = self._run_mounts(state, ins, mode, scratch)
        t0 = time.monotonic()
        try:
            with mounts:
                env.update(mounts.env)
                rc = run_in_root(state.root, cmd.argv, env, cwd=workdir, uid=ident.uid, gid=ident.gid,
                                 groups=ident.groups, mode=mode, network=network, workdir=scratch, files=files,
                                 binds=mounts.binds, stdout=self.stdout, stderr=self.stderr)
        except MountError as e:
            raise self._err(ins, f"RUN --mount: {e}") from None
        t_run = time.monotonic() - t0
        if rc != 0:
            shown = shorten(ins.original)
            raise RunFailed(f"{ins.filename}:{ins.start_line}: {shown!s} returned a non-zero code: {rc}", rc)
        t1 = time.monotonic()
        after = FsIndex.scan(state.root, exclude=self._exclude())
        changes = drop_setup_only_dirs(before_diff(before, after), before, after,
                                       [m.target for m in mounts.specs if m.target] + ["/etc/hosts", "/etc/resolv.conf"])
        state.fs_index = after
        args_used = [f"{k}={v}" for k, v in state.args.items() if v is not None and k not in PROXY_ARGS]
        created_by = ("RUN " + (f"|{len(args_used)} {' '.join(args_used)} " if args_used else "")
                      + " ".join(cmd.argv if cmd.script is None else [ins.args[0]]))
        self.commit_layer(state, changes, created_by)
        log.debug("RUN took %.2fs, snapshot+layer %.2fs", t_run, time.monotonic() - t1)

    def _run_mounts(self, state: StageState, ins: Instruction, mode: str, scratch: Path) -> RunMounts:
        """The RUN's ``--mount`` flags parsed and ready to prepare (see commands/mounts.py)."""
        expand = self._expand(ins, state.expansion_env())
        specs = []
        try:
            for i, value in enumerate(ins.flags.get("mount", [])):
                specs.append(parse_mount(value, state.workdir, expand,
                                         ssh_index=sum(1 for s in specs if s.type == "ssh")))
        except MountError as e:
            raise self._err(ins, f"RUN --mount: {e}") from None

        def tree_for(frm: str) -> Path:
            if not frm:
                return self.opts.context
            ref = self._stage_ref(frm, state.index)
            if ref is not None:
                if self.cache is not None:
                    self.cache.materialize(self, self.stages[ref])
                return self.stages[ref].root
            if frm.lower() in self.stage_names:
                raise MountError(f"from={frm}: stage {frm!r} is defined after this one")
            return self._image_root(frm)

        self._mount_seq = getattr(self, "_mount_seq", 0) + 1
        return RunMounts(specs=specs, root=state.root, mode=mode, scratch=scratch / f"mounts-{self._mount_seq}",
                         cache_root=default_cache_dir(self.opts, self.work), secrets=self.opts.secrets,
                         ssh=ssh_sockets(self.opts.ssh), tree_for=tree_for)

    def _ensure_dir_for_run(self, state: StageState, workdir: str) -> None:
        if workdir != "/" and not resolve_in_root(state.root, workdir).is_dir():
            written = self._ensure_dir(state, workdir)
            if written:
                self._index(state)  # the new dirs are picked up by the RUN's snapshot

    # ----------------------------------------------------------------- COPY / ADD
    def do_copy(self, state: StageState, ins: Instruction, expand) -> None:
        what = f"{ins.filename}:{ins.start_line}: {ins.name}"
        flags = ins.flags
        if len(ins.args) < 2:
            raise self._err(ins, f"{ins.name} requires at least two arguments: source(s) and destination")
        chown = None
        if flags.get("chown") and flags["chown"][-1]:
            chown = resolve_chown(state.root, expand(flags["chown"][-1]))
        chmod = None
        if flags.get("chmod") and flags["chmod"][-1]:
            raw = expand(flags["chmod"][-1])
            try:
                chmod = int(raw, 8)
            except ValueError:
                raise self._err(ins, f"--chmod={raw}: only octal modes (e.g. 0755) are supported") from None
        dest = clean_abs(expand(ins.args[-1]), state.workdir)
        if ins.args[-1].endswith("/") and not dest.endswith("/"):
            dest += "/"
        raw_sources = ins.args[:-1]
        written: list[str] = []
        heredoc_names = {h.name: h for h in ins.heredocs}
        file_sources = []
        for raw in raw_sources:
            if raw.startswith("<<"):
                name = raw.lstrip("<-").strip("'\"")
                h = heredoc_names.get(name)
                if h is None:
                    raise self._err(ins, f"heredoc {raw} has no body")
                content = expand_heredoc(h.content, state.expansion_env()) if h.expand else h.content
                written += write_heredoc_file(state.root, dest, name, content, chown, chmod)
            else:
                file_sources.append(raw)
        if file_sources:
            tree, ctx, keep_owner = self._copy_source_tree(state, ins, expand)
            matches = []
            wildcard = False
            pivots: dict[str, str] = {}
            for raw in file_sources:
                pattern = expand(raw)
                if ins.name == "ADD" and is_git_url(pattern):
                    raise self._err(ins, f"ADD {pattern}: adding a git repository is not supported; clone it in an "
                                         f"earlier stage (RUN git clone ...) and COPY --from that stage")
                if ins.name == "ADD" and ("://" in pattern):
                    written += self._add_url(state, ins, pattern, dest, chown, chmod)
                    continue
                wildcard = wildcard or has_wildcard(pattern)
                found = match_sources(tree, pattern, ctx, what)
                if "/./" in pattern:  # --parents pivot: keep only the path after "/./"
                    cut = posixpath.normpath("/" + pattern.split("/./")[0]).lstrip("/")
                    pivots.update({m.rel: cut for m in found})
                matches += found
            if matches:
                checksum = (flags.get("checksum") or [""])[-1] if ins.name == "ADD" else ""
                if checksum:  # Docker: URLs only; a local file is verified the same way (a strict superset)
                    if len(matches) != 1:
                        raise self._err(ins, "ADD --checksum needs exactly one source file")
                    try:
                        verify_file_checksum(matches[0].path, expand(checksum))
                    except BuildError as e:
                        raise self._err(ins, f"ADD {matches[0].rel}: {e}") from None
                if ins.name == "ADD" and len(matches) >= 1:
                    archives = [m for m in matches if _is_archive(m.path)]
                    for m in archives:
                        written += self._add_archive(state, m.path, dest, chown)
                    matches = [m for m in matches if m not in archives]
                if matches:
                    spec = CopySpec(sources=matches, dest=dest, chown=chown, chmod=chmod, keep_owner=keep_owner,
                                    context=ctx, excludes=[expand(e) for e in flags.get("exclude", [])],
                                    wildcard=wildcard, pivots=pivots,
                                    parents=(flags.get("parents") or ["false"])[-1] in ("", "true"))
                    written += copy_into_root(state.root, spec, what)
        written = sorted(set(written))
        self.commit_layer(state, ChangeSet(changed=tuple(written), deleted=()), self._created_by(ins))
        if state.fs_index is not None:
            state.fs_index.update(state.root, written)

    def _copy_source_tree(self, state: StageState, ins: Instruction, expand) -> tuple[Path, Context | None, bool]:
        frm = (ins.flags.get("from") or [""])[-1]
        if not frm:
            return self.opts.context, self.context, False
        frm = expand(frm)
        ref = self._stage_ref(frm, state.index)
        if ref is not None:
            if self.cache is not None:
                self.cache.materialize(self, self.stages[ref])
            return self.stages[ref].root, None, True
        if frm.lower() in self.stage_names:
            raise self._err(ins, f"--from={frm}: stage {frm!r} is defined after this one")
        return self._image_root(frm), None, True

    def _image_root(self, ref_text: str) -> Path:
        key = ref_text.replace("/", "_").replace(":", "_").replace("@", "_")
        root = self.work / "images" / key
        if not root.exists():
            tmp = root.with_name(key + ".partial")
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            image = self.source.image(ref_text)
            self.source.unpack(image, tmp)
            os.rename(tmp, root)
        return root

    def _add_archive(self, state: StageState, path: Path, dest: str, chown) -> list[str]:
        from ..layers.extract import apply_layer
        target_dir = dest.rstrip("/") or "/"
        host = resolve_in_root(state.root, target_dir)
        created = self._ensure_dir(state, target_dir) if not host.is_dir() else []
        before = FsIndex.scan(host)
        stream = open_archive(path)
        if stream is None:
            raise BuildError(f"ADD {path.name}: not a readable tar archive")
        with stream:
            apply_layer(stream, host, same_owner=True)
        after = FsIndex.scan(host)
        rel_base = os.path.relpath(host, state.root)
        changed = before_diff(before, after).changed
        out = list(created) + [posixpath.normpath(posixpath.join(rel_base, c)) if c else rel_base for c in changed]
        if chown:
            for rel in out:
                os.lchown(state.root / rel, *chown)
        return out

    def _add_url(self, state: StageState, ins: Instruction, url: str, dest: str, chown, chmod) -> list[str]:
        from .steps.add import download_to
        checksum = (ins.flags.get("checksum") or [""])[-1] or None
        try:
            return download_to(state.root, url, dest, chown, chmod, checksum, self.store.tmp_path("download"))
        except BuildError as e:
            raise BuildError(f"{ins.filename}:{ins.start_line}: ADD {url}: {e}") from None

    def cleanup(self) -> None:
        """Remove the work directory (stage roots, blobs) when it was ours."""
        if self.cache is not None:
            self.cache.close()  # background cache pushes read blobs from the work directory
        self.source.close()
        for src in self.__dict__.get("platform_sources", {}).values():
            src.close()
        if self.opts.cleanup:
            shutil.rmtree(self.work, ignore_errors=True)


SHOWN_MAX = 200


def shorten(text: str, limit: int = SHOWN_MAX) -> str:
    """The first line of an instruction (or any text) cut to ``limit`` characters, for errors and logs."""
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > limit:
        return first[:limit] + f"... ({len(first)} characters)"
    return first


def _all_instructions(df: Dockerfile):
    yield from df.meta_args
    for st in df.stages:
        yield st.from_instruction
        yield from st.instructions


def before_diff(before: FsIndex, after: FsIndex) -> ChangeSet:
    from ..fs.snapshot import diff
    return diff(before, after)


def _mount_from(value: str) -> str:
    """The ``from=`` of a RUN ``--mount`` value ('' when absent or malformed)."""
    try:
        return parse_flag_kv(value).get("from", "")
    except ValueError:
        return ""


def _is_archive(path: Path) -> bool:
    """True for a local tar archive ADD must unpack: tar, or tar compressed with gzip, bzip2, xz or zstd."""
    stream = open_archive(path)
    if stream is None:
        return False
    stream.close()
    return True

"""One build: read -> plan -> schedule stages (concurrently) -> the target's image.

Data flows one way: the typed Dockerfile and the options make a :class:`~.plan.BuildPlan`;
the scheduler runs a :class:`~.stage.StageBuilder` per needed stage as soon as the stages it
reads are done; the target stage's image (config + layers, blobs local or still in their
source repository) is handed to the outputs in a :class:`BuildResult`, with the record of
every step.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, TextIO

from ..context import Context
from ..errors import UserError
from ..dockerfile.ignore import DockerIgnore, find_dockerignore
from ..dockerfile.instructions import Run
from ..logs import stage_label
from ..oci.image import Image
from ..options import BuildOptions
from ..registry.client import RegistryClient
from ..registry.uploads import UploadPool
from ..workdir import new_work_dir, release_work_dir
from .cached import open_step_cache
from .images import BlobStore, ImageSource
from .emulation import check_emulation
from .plan import plan_build, read_dockerfile, secret_like_names
from .platform_units import SHARED, assign_units, unit_graph
from .scheduler import default_jobs, run_graph
from .stage import BuildServices, StageBuilder
from .state import PROXY_ARGS
from .step import BuildRecord

log = logging.getLogger("executor.engine")


@dataclass
class BuildResult:
    """The built image, where its blobs are, and what happened.

    ``source`` fetches any layer still only in its source repository; ``record`` lists every
    step (cache use, key, timings); ``stages_built`` the stage indexes built, in file order.
    """

    image: Image
    store: BlobStore
    source: ImageSource
    record: BuildRecord = field(default_factory=BuildRecord)
    stages_built: list[int] = field(default_factory=list)
    platform: str = ""
    bases: dict[str, str] = field(default_factory=dict)  # base image reference -> manifest digest


def _resolve_bases(b: BuildServices, nodes: list) -> None:
    """Resolve every FROM image of ``nodes`` (StageNodes) for its platform, concurrently, before
    any stage runs (an image several stages start from is resolved once, not by each of them): a base missing a requested platform, or unreachable, fails the build before
    minutes of other platforms' work. The results are the sources' cache, so stages do not ask
    again. Raises the first RegistryError / UserError."""
    wanted = list(dict.fromkeys((n.platform, n.base) for n in nodes
                                if n.parent is None and n.base.lower() != "scratch"))
    if len(wanted) < 2:  # one image (maybe several stages FROM it): resolved once, here
        for platform, base in wanted:
            b.source(platform).resolve(base)
        return
    with ThreadPoolExecutor(max_workers=min(8, len(wanted)), thread_name_prefix="resolve") as pool:
        futures = [pool.submit(b.source(platform).resolve, base) for platform, base in wanted]
        for f in futures:
            f.result()


def _remove_roots_soon(b: BuildServices, work: Path) -> threading.Thread:
    """Once every stage is built, no stage root is read again (outputs, pushes, the cache and
    the SBOM read blobs): unmount the stage roots and remove them, the unpacked ``--from``
    images and the scratch directories on a thread, while the push finishes. Removing
    files is mostly waiting for the filesystem (on ext4 ~0.2 s for the 120 MB of a three-stage
    build, of which ~0.03 s CPU), so this takes it off the end of the run. The rest of the work
    directory (blobs) goes in :meth:`Build.cleanup`, which joins this thread first."""
    def remove() -> None:
        b.mounts.release()  # (idempotent: cleanup() calls it again)
        for d in [work / "stages", work / "images", *work.glob("scratch-*")]:
            shutil.rmtree(d, ignore_errors=True)

    t = threading.Thread(target=remove, name="remove-roots", daemon=True)
    t.start()
    return t


def _resolve_bases_soon(b: BuildServices, nodes: list) -> Callable[[], None]:
    """:func:`_resolve_bases` on a thread of its own (while the RUN isolation is probed and the
    cache's trail is read); returns the function that waits for it and raises its error. The
    thread is a daemon: a build failing before the wait does not wait for a slow registry."""
    error: list[BaseException] = []

    def work() -> None:
        try:
            _resolve_bases(b, nodes)
        except BaseException as e:  # noqa: BLE001 - raised by the waiting thread
            error.append(e)

    t = threading.Thread(target=work, name="resolve-bases", daemon=True)
    t.start()

    def wait() -> None:
        t.join()
        if error:
            raise error[0]
    return wait


def _epoch(opts: BuildOptions) -> int | None:
    if not opts.reproducible:
        return None
    if opts.source_date_epoch is not None:
        return opts.source_date_epoch
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)


class Build:
    """Builds ``options.dockerfile`` in ``options.context`` with images pulled through ``client``.

    ``uploads`` (push while building): every layer of an output image is submitted to it as
    soon as it is written, base-image layers when the stage's base is resolved.

    ``build()`` returns a :class:`BuildResult` or raises a UserError subclass
    (DockerfileError, BuildError, RunFailed, RegistryError); ``cleanup()`` removes the work
    directory (call it after the outputs are written).
    """

    def __init__(self, options: BuildOptions, client: RegistryClient, stdout: TextIO | None = None,
                 stderr: TextIO | None = None, uploads: UploadPool | None = None):
        self.opts = options
        self.client = client
        self.uploads = uploads  # layers of the output image are handed to it as they are written
        self.stdout, self.stderr = stdout, stderr
        # a fresh marked work dir (inside --kaniko-dir when given: that directory itself is the
        # user's, never removed, and a kept earlier run's files there cannot collide with this
        # run's); work dirs of earlier runs that were killed are removed first
        parent = Path(options.work_dir) if options.work_dir else None
        try:
            if parent is not None:
                parent.mkdir(parents=True, exist_ok=True)
            self.work = new_work_dir(parent, keep=not options.cleanup)
        except OSError as e:
            where = f"--kaniko-dir {parent}" if parent is not None else f"the temporary directory ({e.filename})"
            raise UserError(f"{where}: cannot make the work directory there ({e.strerror or e}); "
                            "pass --kaniko-dir with a writable directory") from None
        if not options.cleanup:
            log.info("work directory %s is kept (--cleanup=false)", self.work)
        self.store = BlobStore(self.work / "blobs")
        self.services: BuildServices | None = None
        self._roots_removed: threading.Thread | None = None

    def build(self) -> BuildResult:
        """Build the one platform of the options (``--custom-platform`` with one value)."""
        results = self.build_all()
        if len(results) != 1:
            raise UserError(f"{len(results)} platforms were built; use build_all()")
        return results[0]

    def build_all(self) -> list[BuildResult]:
        """Build every platform of ``options.platforms`` (or ``options.platform``); one result
        each, in the order given. Stages that do not depend on the target platform (``FROM
        --platform=$BUILDPLATFORM`` without ``ARG TARGET*``) are built once for all of them."""
        opts = self.opts
        if self._roots_removed is not None:  # a Build run again: the last run's roots are gone first
            self._roots_removed.join()
        df = read_dockerfile(opts.dockerfile)
        platforms = list(dict.fromkeys(opts.platforms or [opts.platform]))
        plans = {p: plan_build(df, replace(opts, platform=p)) for p in platforms}
        for w in df.warnings:
            log.warning("%s", w)
        secret_like = secret_like_names(df)
        if secret_like:
            log.warning("ARG/ENV %s look like secrets: their values are stored in the image history and "
                        "config; pass secrets with --secret id=NAME,env=NAME and read them in RUN "
                        "--mount=type=secret,id=NAME instead", ", ".join(secret_like))
        skipped = [s.index for s in df.stages if all(s.index not in pl.order for pl in plans.values())]
        if skipped:
            log.info("skipping stages the target does not need: %s", ", ".join(map(str, skipped)))
        units = assign_units(plans)
        work = unit_graph(plans, units)
        check_emulation(plans, units)
        ignore_file = find_dockerignore(opts.context, opts.dockerfile)
        from ..cache.base_images import open_local_cache
        b = self.services = BuildServices(
            opts=opts, client=self.client, plans=plans, work=self.work, store=self.store,
            context=Context(opts.context, DockerIgnore.from_file(ignore_file)),
            cache=open_step_cache(opts, self.client, {p: pl.nodes[pl.target].label for p, pl in plans.items()}),
            record=BuildRecord(), epoch=_epoch(opts),
            stdout=self.stdout, stderr=self.stderr,
            local_cache=open_local_cache(opts.cache_dir, opts.cache_ttl_seconds), units=units,
            readers={u: sum(1 for deps in work.deps.values() if u in deps) for u in work.order},
            uploads=self.uploads)
        from .lazyfs import LayerIndexes, lazy_enabled
        if b.cache is not None and lazy_enabled():
            b.indexes = LayerIndexes(b.cache.store)
        b.used_build_args |= set().union(*(pl.used_build_args for pl in plans.values()))
        bases_resolved = _resolve_bases_soon(b, [plans[work.platform_of[u]].nodes[u[1]] for u in work.order])
        # the RUN isolation is probed when the first RUN executes (StageBuilder... isolation_for)
        b.run_network_none = any(str(i.network) == "none" for pl in plans.values() for n in pl.order
                                 for i in pl.nodes[n].stage.instructions if isinstance(i, Run))
        jobs = opts.jobs or default_jobs()
        if len(work.order) > 1:
            log.info("building %d stages, up to %d at a time (--jobs)", len(work.order), jobs)
        many = len(platforms) > 1

        def build_unit(unit: tuple[str, int]) -> None:
            plan = plans[work.platform_of[unit]]
            node = plan.nodes[unit[1]]
            label = node.label if len(work.order) > 1 else ""
            if many:
                label = f"{node.label} {'all platforms' if unit[0] == SHARED else unit[0]}"
                if unit[0] == SHARED:
                    log.info("stage %s does not depend on the target platform: built once for %s",
                             node.label, ", ".join(platforms))
            with stage_label(label):
                StageBuilder(b, plan, node, exported=unit in work.exported).run()

        bases_resolved()
        run_graph(work.order, work.deps, build_unit, jobs, on_abort=b.abort)
        self._warn_unused(b.used_build_args)
        results = []
        bases = {ref: resolved.digest for src in list(b._sources.values())
                 for ref, (resolved, _) in list(src._resolved.items())}
        for p in platforms:
            plan = plans[p]
            target = b.state_for(p, plan.target)
            img = target.image
            if opts.labels:
                labels = dict(img.container_config.get("Labels") or {})
                labels.update(opts.labels)
                img.container_config["Labels"] = labels
            img.config["created"] = b.created()
            if b.cache is not None:
                b.cache.finalize(target, opts.labels)
            results.append(BuildResult(image=img, store=self.store, source=b.source(plan.nodes[plan.target].platform),
                                       record=b.record, stages_built=plan.order, platform=p,
                                       bases=dict(bases)))
        b.record.finished = time.time()
        if opts.cleanup:
            self._roots_removed = _remove_roots_soon(b, self.work)
        return results

    def _warn_unused(self, used: set[str]) -> None:
        unused = set(self.opts.build_args) - used - set(PROXY_ARGS)
        if unused:
            log.warning("build args were not consumed by any ARG: %s", ", ".join(sorted(unused)))

    def cleanup(self) -> None:
        """Wait for background cache writes, close sources, remove the work directory when ours."""
        b = self.services
        if self._roots_removed is not None:
            self._roots_removed.join()
        if b is not None:
            if b.cache is not None:
                b.cache.close()  # background cache pushes read blobs from the work directory
            b.close()
        if self.opts.cleanup:
            shutil.rmtree(self.work, ignore_errors=True)
        release_work_dir(self.work)

"""``executor tekton-step``: the kaniko-build Tekton step (Task and StepAction) as code.

Tekton hands the step its inputs the way the catalog's YAML declares them (``tekton/tasks/
kaniko-build`` and ``tekton/stepactions/kaniko-build``): params and workspace paths in
environment variables, the BUILD_ARGS and EXTRA_ARGS arrays as the step's args with a separator
between them (``BUILD_ARGS... --kaniko-build-extra-args-- EXTRA_ARGS...``), and result paths.

Environment (all strings, as Tekton substitutes them; unset = ""):

* ``PARAM_IMAGE``, ``PARAM_DOCKERFILE``, ``PARAM_CONTEXT``: the Task params; the Dockerfile and
  context are absolute or relative to ``SOURCE_PATH`` (the source workspace).
* ``PARAM_SBOM``: ``false`` (default), ``true``/``spdx`` (SPDX 2.3) or ``cyclonedx``;
  ``PARAM_PROVENANCE``: ``false``/``true``. They add ``--sbom [--sbom-format]`` / ``--provenance``.
* ``DOCKERCONFIG_BOUND``/``DOCKERCONFIG_PATH``, ``CACHE_BOUND``/``CACHE_PATH``: the optional
  workspaces (Tekton's ``$(workspaces.X.bound)`` / ``.path``; a StepAction gets only the path,
  "" when unbound, so an empty ``*_BOUND`` with a path counts as bound).
* ``RESULT_IMAGE_DIGEST``, ``RESULT_IMAGE_URL``, ``RESULT_ARTIFACT_OUTPUTS``: result file paths
  (``$(results.X.path)`` or ``$(step.results.X.path)``); the last may be empty (no such result).

Results, written only after a successful push: IMAGE_DIGEST ``sha256:<hex>`` (no newline),
IMAGE_URL (repository as the executor normalised it, plus IMAGE's tag), ARTIFACT_OUTPUTS the
JSON object ``{"uri": REPO, "digest": "sha256:...", "isBuildArtifact": "true"}`` (Tekton Chains'
type hint for a built artifact). Their termination-message form must fit Tekton's 4096-byte
limit; a longer one is refused before the build starts.

Errors are one line (``kaniko-build: ...``) and a non-zero exit; a failed build keeps its exit
status. Nothing of a docker config is logged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .errors import UserError

SEPARATOR = "--kaniko-build-extra-args--"
# Tekton's termination message holds every result of a step: 4096 bytes (docs/tasks.md "Emitting results").
RESULTS_LIMIT = 4096
NORMALISATION_ROOM = 256  # bytes the executor may add to IMAGE's repository (index.docker.io/library/)
# Flags `executor warm` accepts among a build's flags: those taking a value, then switches.
WARM_VALUE_FLAGS = ("--build-arg", "--insecure-registry", "--skip-tls-verify-registry", "--registry-certificate",
                    "--registry-client-cert", "--registry-mirror", "--registry-map", "--image-download-retry",
                    "--custom-platform", "--customPlatform", "--cache-ttl", "--verbosity", "--log-format")
WARM_SWITCHES = ("--insecure", "--insecure-pull", "--skip-tls-verify", "--skip-tls-verify-pull",
                 "--skip-default-registry-fallback", "--log-timestamp")
SBOM_VALUES = {"false": None, "": None, "true": "spdx", "spdx": "spdx", "cyclonedx": "cyclonedx"}


class StepError(UserError):
    """Bad step input (a malformed BUILD_ARGS element, an unknown SBOM value, ...)."""


@dataclass(frozen=True)
class Credentials:
    """What DOCKER_CONFIG the build gets: ``set_to`` a directory, ``unset`` it, or leave it;
    ``copy_from`` is a ``.dockerconfigjson`` to copy to ``set_to/config.json`` first."""

    set_to: str | None = None
    unset: bool = False
    copy_from: str | None = None
    note: str = ""
    warning: str = ""


@dataclass(frozen=True)
class StepPlan:
    """The executor invocations of one step: ``warm`` (or None) then ``build`` (argv without
    the program name), the credentials choice and where results go."""

    build: tuple[str, ...]
    warm: tuple[str, ...] | None
    credentials: Credentials
    dirs: tuple[str, ...]           # cache directories to create
    image: str
    digest_result: str
    url_result: str
    artifact_result: str


def _path(base: str, value: str) -> str:
    """``value`` if absolute, else ``base/value`` (kept as written: Tekton users see the same path)."""
    return value if value.startswith("/") else f"{base.rstrip('/')}/{value}"


def _bound(env: Mapping[str, str], name: str) -> bool:
    flag = env.get(f"{name}_BOUND", "")
    return flag == "true" or (flag == "" and bool(env.get(f"{name}_PATH")))


def split_args(args: Sequence[str]) -> list[str]:
    """``BUILD_ARGS... SEPARATOR EXTRA_ARGS...`` -> executor flags: each build arg becomes
    ``--build-arg KEY=VALUE`` (a bare KEY too), extra args pass unchanged, empty elements go.
    Raises StepError when the separator is not there exactly once or a build arg is no KEY[=VALUE]."""
    if list(args).count(SEPARATOR) != 1:
        raise StepError(f"BUILD_ARGS and EXTRA_ARGS must not contain the element '{SEPARATOR}' "
                        "(the Task's own separator between them)")
    i = list(args).index(SEPARATOR)
    out: list[str] = []
    for a in args[:i]:
        if not a:
            continue
        if not re.match(r"[A-Za-z_]", a):
            raise StepError(f"BUILD_ARGS element is not KEY=VALUE (put executor flags in EXTRA_ARGS): {a}")
        out += ["--build-arg", a]
    return out + [a for a in args[i + 1:] if a]


def has_flag(flag: str, args: Sequence[str]) -> bool:
    """True when ``args`` hold ``flag`` or ``flag=value``."""
    return any(a == flag or a.startswith(flag + "=") for a in args)


def warm_flags(args: Sequence[str]) -> list[str]:
    """The flags among a build's ``args`` that ``executor warm`` accepts (build args, registry
    and logging flags, with their values); build-only flags and their values are left out."""
    out: list[str] = []
    take = False
    for a in args:
        if take:
            out.append(a)
            take = False
        elif a in WARM_VALUE_FLAGS:
            out.append(a)
            take = True
        elif a.split("=", 1)[0] in WARM_VALUE_FLAGS + WARM_SWITCHES:
            out.append(a)
    return out


def choose_credentials(env: Mapping[str, str]) -> Credentials:
    """A bound dockerconfig workspace holding ``config.json`` (a generic Secret) or
    ``.dockerconfigjson`` (a kubernetes.io/dockerconfigjson Secret) wins. Otherwise the
    ServiceAccount's credentials, which Tekton writes to ``$HOME/.docker/config.json``: a
    DOCKER_CONFIG baked into the image that has no config.json would hide them, so it is unset."""
    if _bound(env, "DOCKERCONFIG"):
        ws = env.get("DOCKERCONFIG_PATH", "")
        if os.path.isfile(os.path.join(ws, "config.json")):
            return Credentials(set_to=ws, note="registry credentials from the dockerconfig workspace")
        if os.path.isfile(os.path.join(ws, ".dockerconfigjson")):
            return Credentials(copy_from=os.path.join(ws, ".dockerconfigjson"),
                               note="registry credentials from the dockerconfig workspace")
        warning = ("the dockerconfig workspace is bound but has neither config.json nor .dockerconfigjson; "
                   "using the ServiceAccount credentials")
    else:
        warning = ""
    own = env.get("DOCKER_CONFIG", "")
    home = env.get("HOME") or "/root"
    if own and not os.path.isfile(os.path.join(own, "config.json")) \
            and os.path.isfile(os.path.join(home, ".docker", "config.json")):
        return Credentials(unset=True, warning=warning)
    return Credentials(warning=warning)


def result_message_size(image_url: str, digest: str, artifact: str) -> int:
    """Bytes of the termination message Tekton's entrypoint writes for these results (a JSON
    list of ``{"key","value","type"}``), an upper bound for the limit check."""
    entries = [{"key": "IMAGE_DIGEST", "value": digest, "type": 1}, {"key": "IMAGE_URL", "value": image_url, "type": 1}]
    if artifact:
        entries.append({"key": "ARTIFACT_OUTPUTS", "value": artifact, "type": 1})
    return len(json.dumps(entries).encode())


def artifact_outputs(repo: str, digest: str) -> str:
    """The ARTIFACT_OUTPUTS object result: Chains' ``*ARTIFACT_OUTPUTS`` hint, compact JSON."""
    return json.dumps({"uri": repo, "digest": digest, "isBuildArtifact": "true"}, separators=(",", ":"))


def plan_step(env: Mapping[str, str], args: Sequence[str], names_file: str, digest_file: str) -> StepPlan:
    """Everything the step does, from its environment and args (see the module docstring).
    ``names_file``/``digest_file`` are where the build writes ``repo@digest`` and the digest."""
    image = env.get("PARAM_IMAGE", "")
    if not image:
        raise StepError("IMAGE is empty: give the reference to push to")
    src = env.get("SOURCE_PATH", "")
    dockerfile = _path(src, env.get("PARAM_DOCKERFILE") or "./Dockerfile")
    context = _path(src, env.get("PARAM_CONTEXT") or "./")
    flags = split_args(args)
    sbom = env.get("PARAM_SBOM", "false").strip().lower()
    if sbom not in SBOM_VALUES:
        raise StepError(f"SBOM={env.get('PARAM_SBOM')}: use false, true, spdx or cyclonedx")
    prov = env.get("PARAM_PROVENANCE", "false").strip().lower()
    if prov not in ("false", "true", ""):
        raise StepError(f"PROVENANCE={env.get('PARAM_PROVENANCE')}: use false or true")
    if SBOM_VALUES[sbom] and not has_flag("--sbom", flags):
        flags += ["--sbom", f"--sbom-format={SBOM_VALUES[sbom]}"]
    if prov == "true" and not has_flag("--provenance", flags):
        flags.append("--provenance")
    warm = None
    dirs: list[str] = []
    if _bound(env, "CACHE"):
        cache = env.get("CACHE_PATH", "").rstrip("/")
        flags.append("--cache")
        if not has_flag("--cache-dir", flags):
            dirs.append(f"{cache}/base-images")
            warm = ("warm", "--force", "--cache-dir", f"{cache}/base-images", "--dockerfile", dockerfile,
                    *warm_flags(flags))
            flags += ["--cache-dir", f"{cache}/base-images"]
        if not has_flag("--cache-repo", flags):
            dirs.append(f"{cache}/layers")
            flags += ["--cache-repo", f"oci:{cache}/layers"]
    digest_result = env.get("RESULT_IMAGE_DIGEST", "")
    url_result = env.get("RESULT_IMAGE_URL", "")
    if not digest_result or not url_result:
        raise StepError("RESULT_IMAGE_DIGEST and RESULT_IMAGE_URL must name the result files")
    build = ("--dockerfile", dockerfile, "--context", context, "--destination", image, "--digest-file", digest_file,
             "--image-name-with-digest-file", names_file, *flags)
    return StepPlan(build=build, warm=warm, credentials=choose_credentials(env), dirs=tuple(dirs), image=image,
                    digest_result=digest_result, url_result=url_result,
                    artifact_result=env.get("RESULT_ARTIFACT_OUTPUTS", ""))


def image_url(pushed: str, image: str) -> str:
    """IMAGE_URL: the repository of ``pushed`` (``repo@digest``, as the executor normalised it)
    with IMAGE's tag; ``latest`` when IMAGE has neither tag nor digest, none when it had a digest."""
    repo = pushed.rsplit("@", 1)[0]
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        return f"{repo}:{last.rsplit(':', 1)[1]}"
    return repo if ref != image else f"{repo}:latest"


def results_of(names_text: str, digest_text: str, image: str) -> tuple[str, str, str]:
    """(IMAGE_DIGEST, IMAGE_URL, repository) from the build's digest files. Raises StepError when
    the digest is not ``sha256:<64 hex>`` or the pushed name does not carry it."""
    digest = digest_text.strip()
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise StepError(f"the executor wrote no sha256 digest: '{digest}'")
    line = (names_text.splitlines() or [""])[0]
    if line.rsplit("@", 1)[-1] != digest:
        raise StepError(f"pushed '{line}' does not carry the digest {digest}")
    return digest, image_url(line, image), line.rsplit("@", 1)[0]


Runner = Callable[[Sequence[str]], int]


def run_in_process(argv: Sequence[str]) -> int:
    """Run ``executor ARGV`` in this process; its exit status."""
    from .cli import main
    try:
        main(list(argv))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def say(msg: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(f"kaniko-build: {msg}\n")
    stream.flush()


def run(args: Sequence[str], env: Mapping[str, str] | None = None, runner: Runner = run_in_process) -> int:
    """The step: plan, credentials, warm-up, build, results. Returns the exit status."""
    env = dict(os.environ if env is None else env)
    scratch = Path(tempfile.mkdtemp(prefix="kaniko-build-"))
    try:
        plan = plan_step(env, args, str(scratch / "names"), str(scratch / "digest"))
        # Refuse before building what could not be reported: the results as they will be, with
        # room for the registry's normalisation of the repository (docker.io/library/...).
        zero = "sha256:" + "0" * 64
        if result_message_size(plan.image, zero, artifact_outputs(plan.image, zero) if plan.artifact_result else "") \
                > RESULTS_LIMIT - NORMALISATION_ROOM:
            raise StepError(f"IMAGE is {len(plan.image)} bytes: its results would not fit Tekton's "
                            f"{RESULTS_LIMIT}-byte result limit")
        for result in (plan.digest_result, plan.url_result, plan.artifact_result):
            if result and not os.path.isdir(os.path.dirname(result) or "."):
                raise StepError(f"{result}: the result directory does not exist (is this step run by Tekton?)")
        creds = plan.credentials
        if creds.warning:
            say(f"warning: {creds.warning}", err=True)
        if creds.copy_from:
            target = scratch / "docker"
            target.mkdir(mode=0o700)
            shutil.copyfile(creds.copy_from, target / "config.json")
            os.environ["DOCKER_CONFIG"] = str(target)
        elif creds.set_to:
            os.environ["DOCKER_CONFIG"] = creds.set_to
        elif creds.unset:
            os.environ.pop("DOCKER_CONFIG", None)
        if creds.note:
            say(creds.note)
        for d in plan.dirs:
            os.makedirs(d, exist_ok=True)
        if plan.warm is not None:
            say(f"caching the Dockerfile's base images in {plan.warm[3]} (executor warm)")
            if runner(plan.warm) != 0:
                say(f"warning: could not cache the base images in {plan.warm[3]}; the build pulls them "
                    "from the registry", err=True)
        code = runner(plan.build)
        if code != 0:
            return code
        names = scratch / "names"
        digest_file = scratch / "digest"
        digest, url, repo = results_of(names.read_text() if names.exists() else "",
                                       digest_file.read_text() if digest_file.exists() else "", plan.image)
        artifact = artifact_outputs(repo, digest) if plan.artifact_result else ""
        if result_message_size(url, digest, artifact) > RESULTS_LIMIT:
            raise StepError(f"the results for {url} exceed Tekton's {RESULTS_LIMIT}-byte result limit")
        Path(plan.digest_result).write_text(digest)
        Path(plan.url_result).write_text(url)
        if plan.artifact_result:
            Path(plan.artifact_result).write_text(artifact)
        say(f"pushed {url}@{digest}")
        return 0
    except StepError as e:
        say(str(e), err=True)
        return 1
    except OSError as e:  # an unwritable result or cache path, a missing workspace
        say(f"{e.filename or ''}: {e.strerror or e}", err=True)
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


USAGE = """usage: executor tekton-step [BUILD_ARG...] --kaniko-build-extra-args-- [EXTRA_ARG...]

The kaniko-build Tekton step (Task and StepAction, tekton/stepactions/kaniko-build): builds
and pushes PARAM_IMAGE, then writes the step's results. Not meant to be typed by hand; the
catalog's YAML passes everything.

Arguments: the BUILD_ARGS array (each becomes --build-arg), the separator, then the
EXTRA_ARGS array (passed to the executor as they are).

Environment (unset = empty):
  PARAM_IMAGE, PARAM_DOCKERFILE, PARAM_CONTEXT   the Task params (paths relative to SOURCE_PATH)
  SOURCE_PATH       the source workspace
  PARAM_SBOM        false | true | spdx | cyclonedx
  PARAM_PROVENANCE  false | true
  DOCKERCONFIG_BOUND, DOCKERCONFIG_PATH          the dockerconfig workspace (else the
                    ServiceAccount's credentials in $HOME/.docker; a DOCKER_CONFIG without
                    a config.json is then ignored)
  CACHE_BOUND, CACHE_PATH                        the cache workspace (an OCI layout cache)
  RESULT_IMAGE_DIGEST, RESULT_IMAGE_URL, RESULT_ARTIFACT_OUTPUTS   result file paths

Results are written only after a successful push. Errors: one line "kaniko-build: ...",
non-zero exit.
"""


def main(argv: Sequence[str]) -> None:
    """``executor tekton-step [BUILD_ARGS...] --kaniko-build-extra-args-- [EXTRA_ARGS...]``."""
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return
    sys.exit(run(argv))

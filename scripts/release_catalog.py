"""The released Tekton catalog: a copy of tekton/ with every image default pinned by digest.

Used by scripts/release.py; importable on its own (tests/integration/test_release.py and
tests/unit/test_tekton_release_catalog.py use it on temp copies).

* :func:`copy_catalog` copies tekton/ without its ``tests/`` and ``samples/`` directories: the
  catalog harness's fixtures and the usage examples stay in the repository; their own steps'
  images (e.g. a busybox step of a sample Task composing the StepAction) are the user's choice,
  not image defaults of the catalog, and a release names only images it built and pinned.
* :func:`pin_catalog` rewrites, in one pass over every YAML file of the copy, the ``default:``
  line of every image param (:data:`IMAGE_PARAMS`: the executor image's ``BUILDER_IMAGE`` /
  ``builder-image`` in the Task, StepAction, Pipelines and TriggerTemplate; the helper image's
  ``GIT_IMAGE`` and ``skopeo-image``) to ``IMAGE:TAG@sha256:...``. Only those lines change; a
  param whose name looks like an image (``*_IMAGE``, ``*-image``) with a default that is not in
  :data:`IMAGE_PARAMS` is an error, so a new image param cannot slip through unpinned. The
  resources' README files get the same old -> new replacement so they name the pinned defaults.
* :func:`unpinned_images` lists every step/sidecar ``image:`` that is neither a param reference
  nor ``@sha256:``-pinned, and every image param default without a digest (empty = releasable).
* :func:`bundle_resources` reads the Tasks, StepActions and Pipelines of the copy for the bundle.

Errors: :class:`CatalogError` with one line naming the file and what to do.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from executor.oci.bundle import BUNDLE_KINDS, BundleResource, resource_from_yaml  # noqa: E402

# param name -> the release image that pins its default ("executor" or "catalog-tools").
IMAGE_PARAMS: dict[str, str] = {
    "BUILDER_IMAGE": "executor", "builder-image": "executor",
    "GIT_IMAGE": "catalog-tools", "git-image": "catalog-tools",
    "SKOPEO_IMAGE": "catalog-tools", "skopeo-image": "catalog-tools",
}
# A param name that names an image to run: ends in IMAGE/-image/_image; plain IMAGE is the
# destination of a build (never defaulted to an image to run).
IMAGE_PARAM_NAME = re.compile(r"(?i)^(?!image$).*(^|[_-])image$")
PINNED = re.compile(r"^[a-z0-9][a-z0-9._/:-]*[a-z0-9](:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?@sha256:[0-9a-f]{64}$")
LEFT_OUT = ("tests", "samples")
_ITEM = re.compile(r'^(?P<indent> *)- name: *"?(?P<name>[A-Za-z0-9_.-]+)"? *$')
_DEFAULT = re.compile(r"^(?P<head> *default:) *(?P<value>.*?) *$")


class CatalogError(Exception):
    """The catalog cannot be released as it is (message names the file and the fix)."""


@dataclass(frozen=True)
class PinChange:
    """One rewritten default: ``path`` (relative to the catalog root), 1-based ``line``."""

    path: str
    line: int
    param: str
    old: str
    new: str


def yaml_files(root: Path) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` under ``root`` in a stable order."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml"))


def copy_catalog(src: Path, dest: Path) -> Path:
    """Copy the catalog ``src`` to ``dest`` (which must not exist), leaving out ``tests/`` and
    ``samples/`` directories."""
    if dest.exists():
        raise CatalogError(f"{dest} already exists; give a new --catalog-out directory")
    shutil.copytree(src, dest, ignore=lambda d, names: [n for n in names if n in LEFT_OUT and Path(d, n).is_dir()])
    return dest


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _rewrite(text: str, rel: str, images: dict[str, str]) -> tuple[str, list[PinChange]]:
    """``text`` with the default of every image param replaced (see the module docstring)."""
    lines = text.split("\n")
    changes: list[PinChange] = []
    param: str | None = None
    item_indent = -1
    for i, line in enumerate(lines):
        stripped = line.strip()
        if param is not None and stripped and not stripped.startswith("#") and _indent(line) <= item_indent:
            param = None
        m = _ITEM.match(line)
        if m:
            param, item_indent = m["name"], len(m["indent"])
            continue
        d = _DEFAULT.match(line) if param is not None else None
        if not d:
            continue
        name, param = param, None
        if not IMAGE_PARAM_NAME.match(name):
            continue
        old = d["value"].strip("\"'")
        if name not in IMAGE_PARAMS:
            raise CatalogError(f"{rel}:{i + 1}: param {name} looks like an image ({old}) but the release does "
                               f"not know which image pins it; add it to IMAGE_PARAMS in scripts/release_catalog.py")
        if old in ("|", ">", "|-", ">-") or not old:
            raise CatalogError(f"{rel}:{i + 1}: the default of {name} must be one plain scalar on its line")
        new = images[IMAGE_PARAMS[name]]
        if old != new:
            lines[i] = f"{d['head']} {new}"
            changes.append(PinChange(path=rel, line=i + 1, param=name, old=old, new=new))
    return "\n".join(lines), changes


def pin_catalog(root: Path, images: dict[str, str]) -> list[PinChange]:
    """Pin every image param default under ``root`` (in place; a release copy, never the working
    tree) to ``images[role]`` (roles: ``executor``, ``catalog-tools``; each ``IMAGE@sha256:<hex>``).

    Every file is rewritten in memory and checked (only ``default:`` lines changed; the YAML still
    parses; each image param's default is now the pinned value) before any is written. Returns the
    changes. Raises :class:`CatalogError` for a bad reference, an unknown image param, or a rewrite
    that fails a check.
    """
    for role in sorted(set(IMAGE_PARAMS.values())):
        if not PINNED.match(images.get(role, "")):
            raise CatalogError(f"the {role} image {images.get(role)!r} is not IMAGE@sha256:<64 hex>")
    out: dict[Path, str] = {}
    changes: list[PinChange] = []
    for path in yaml_files(root):
        rel = str(path.relative_to(root))
        text = path.read_text()
        new_text, file_changes = _rewrite(text, rel, images)
        if not file_changes:
            continue
        old_lines, new_lines = text.split("\n"), new_text.split("\n")
        diff = [n for n, (a, b) in enumerate(zip(old_lines, new_lines), 1) if a != b]
        if len(old_lines) != len(new_lines) or diff != [c.line for c in file_changes]:
            raise CatalogError(f"{rel}: internal error: the rewrite changed lines {diff}, not only the defaults")
        for doc_params in _param_lists(list(yaml.safe_load_all(new_text)), rel):
            for p in doc_params:
                if p.get("name") in IMAGE_PARAMS and "default" in p and p["default"] != images[IMAGE_PARAMS[p["name"]]]:
                    raise CatalogError(f"{rel}: param {p['name']} still defaults to {p['default']!r} after pinning "
                                       "(a layout the line rewrite does not understand)")
        out[path] = new_text
        changes += file_changes
    for path, new_text in out.items():
        path.write_text(new_text)
    replacements = {c.old: c.new for c in changes}
    for readme in sorted(root.glob("*/*/*/README.md")):  # per-resource READMEs only
        text = readme.read_text()
        new_text = text
        for old, new in replacements.items():
            new_text = re.sub(rf"(?<![\w./:@-]){re.escape(old)}(?![\w@])", new, new_text)
        if new_text != text:
            readme.write_text(new_text)
    return changes


def _param_lists(node, rel: str) -> Iterator[list[dict]]:
    """Every ``params:`` list of dicts anywhere in ``node`` (Task/StepAction/Pipeline/
    TriggerTemplate declarations, taskSpec params, and pipeline-task values alike)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "params" and isinstance(v, list) and all(isinstance(p, dict) for p in v):
                yield v
            yield from _param_lists(v, rel)
    elif isinstance(node, list):
        for v in node:
            yield from _param_lists(v, rel)


def _images(node) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "image" and isinstance(v, str):
                yield v
            yield from _images(v)
    elif isinstance(node, list):
        for v in node:
            yield from _images(v)


def unpinned_images(root: Path) -> list[str]:
    """``path: what`` for every image reference under ``root`` that is not pinned by digest: a
    literal ``image:`` without ``@sha256:`` (``$(params.X)`` is fine: its default is checked), and
    an image param default (:data:`IMAGE_PARAM_NAME`) without ``@sha256:``."""
    found = []
    for path in yaml_files(root):
        rel = str(path.relative_to(root))
        docs = list(yaml.safe_load_all(path.read_text()))
        for image in _images(docs):
            if not image.startswith("$(") and not PINNED.match(image):
                found.append(f"{rel}: image: {image}")
        for params in _param_lists(docs, rel):
            for p in params:
                name, default = p.get("name"), p.get("default")
                if isinstance(name, str) and IMAGE_PARAM_NAME.match(name) and isinstance(default, str) \
                        and not PINNED.match(default):
                    found.append(f"{rel}: param {name} default {default}")
    return found


def bundle_resources(root: Path) -> list[BundleResource]:
    """The Tasks, StepActions and Pipelines under ``root`` (``<kind>s/<name>/<X.Y>/<name>.yaml``),
    read as bundle layers; samples, Triggers resources and other files are left out."""
    out = []
    for path in yaml_files(root):
        rel = path.relative_to(root)
        if len(rel.parts) != 4 or rel.parts[0].rstrip("s") not in BUNDLE_KINDS or rel.stem != rel.parts[1]:
            continue
        out.append(resource_from_yaml(path.read_bytes(), str(rel)))
    return out

"""Offline checks for the Tekton catalog under tekton/: JSON schemas the project writes, and
reference checks (every $(params.X), $(workspaces.X.*), $(results.X.path), $(tasks.T.results.R)
and $(tt.params.X) is declared) plus the catalog layout rules.

Used by tests/unit/test_tekton_*.py; runnable as ``python -m tests.tekton_schemas [PATHS]``.
"""

from tests.tekton_schemas.checker import Catalog, Problem, check_paths, load_yaml_docs  # noqa: F401

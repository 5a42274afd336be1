"""python -m tests.tekton_schemas [PATHS...]: check the catalog (default: every YAML under tekton/)."""

import sys
from pathlib import Path

from tests.tekton_schemas.checker import CATALOG_ROOT, check_paths, yaml_files


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or yaml_files(CATALOG_ROOT)
    problems = check_paths(paths)
    for p in problems:
        print(p)
    print(f"tekton catalog check: {len(paths)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

import json
import subprocess

import six

info = {"six": six.__version__, "jq": subprocess.run(["jq", "--version"], capture_output=True, text=True).stdout.strip()}
print(json.dumps(info, sort_keys=True))

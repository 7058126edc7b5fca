"""The file mitmproxy loads: `mitmdump -s addon/gateway.py --set krakend_config=krakend.json`.

mitmproxy runs this file outside any package, so it must not rely on sibling modules.
It imports the real package by absolute import: from an installed checkout
(`pip install -e .`) or, failing that, from the `addon/` folder beside it.
"""

import os
import sys

try:
    import krakend_mitm  # noqa: F401
except ImportError:  # a plain checkout that was never pip-installed
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from krakend_mitm.addon import Gateway  # noqa: E402

addons = [Gateway()]

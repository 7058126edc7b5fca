"""The `-s` script the CLI hands to mitmproxy; works for any install of the package.
(`addon/gateway.py` is the same for a plain checkout.)"""

from krakend_mitm.addon import Gateway

addons = [Gateway()]

"""krakend-mitm: KrakenD CE 2.13 behaviour as a mitmproxy addon."""

KRAKEND_VERSION = "2.13.8"

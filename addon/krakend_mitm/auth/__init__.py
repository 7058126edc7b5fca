"""The `auth/validator` stage: KrakenD CE 2.13 JWT validation, ready for Descope.

Plain Python (no mitmproxy). The addon owns one `KeyStore` and one `EndpointValidator` per
protected endpoint:

    from krakend_mitm.auth import KeyStore, EndpointValidator, parse_validator

    store = KeyStore(url_map=["https://api.descope.com=http://127.0.0.1:4000"])
    spec = parse_validator(endpoint.extra_config, path="endpoints[0].extra_config", endpoint_path="/api/:id")
    if spec is not None:
        validator = EndpointValidator(spec, store, endpoint_path="/api/:id")
    store.start()                         # in mitmproxy's `running` hook
    verdict = await validator.authenticate(flow_headers)
    store.stop()                          # in mitmproxy's `done` hook
"""

from krakend_mitm.auth.claims import claim_for_url, render_claim, render_claim_for_url, render_claim_values
from krakend_mitm.auth.config import (
    LEGACY_NAMESPACE,
    NAMESPACE,
    Problem,
    RootValidatorSpec,
    ValidatorSpec,
    collect_problems,
    collect_root_problems,
    find_validator,
    parse_root_validator,
    parse_validator,
)
from krakend_mitm.auth.jwks import FetchError, FetchRequest, FetchResponse, KeyStore, TLSOptions, parse_url_map
from krakend_mitm.auth.stage import AuthStage, check_problems
from krakend_mitm.auth.validator import EndpointValidator, Verdict

__all__ = [
    "AuthStage",
    "EndpointValidator",
    "FetchError",
    "FetchRequest",
    "FetchResponse",
    "KeyStore",
    "LEGACY_NAMESPACE",
    "NAMESPACE",
    "Problem",
    "RootValidatorSpec",
    "TLSOptions",
    "check_problems",
    "ValidatorSpec",
    "Verdict",
    "claim_for_url",
    "collect_problems",
    "collect_root_problems",
    "find_validator",
    "parse_root_validator",
    "parse_url_map",
    "parse_validator",
    "render_claim",
    "render_claim_for_url",
    "render_claim_values",
]

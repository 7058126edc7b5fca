"""The `krakend-mitm mock-descope` and `krakend-mitm token` subcommands.

The lead registers them with `add_mock_descope_parser(subparsers)` / `add_token_parser(subparsers)`; each parser
sets `func`, so `args.func(args)` runs the command and returns its exit code. Until then:
    python -m krakend_mitm.descope.commands token --roles admin
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from krakend_mitm.descope.config import DEFAULT_BASE_URL, DEFAULT_PORT, DEFAULT_PROJECT_ID, MockConfigError
from krakend_mitm.descope.tokens import TokenFormatError, decode_unverified

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """One line for stderr, and the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------
# mock-descope


def add_mock_descope_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "mock-descope", help="run a local mock Descope (JWKS, access-key exchange, refresh, /__mock/ controls)",
        description="Run a mock Descope on 127.0.0.1 in the foreground until Ctrl-C or SIGTERM.")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; "
                                                                       "0 picks a free one)")
    parser.add_argument("--project", help=f"project id (default {DEFAULT_PROJECT_ID})")
    parser.add_argument("--config", help="mock configuration file (YAML or JSON, descope.md §10.1)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    parser.set_defaults(func=run_mock_descope)
    return parser


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def run_mock_descope(args: argparse.Namespace) -> int:
    from krakend_mitm.descope.mock import MockDescope  # the server is only needed here

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        mock = MockDescope(args.config, port=args.port, project_id=args.project)
        mock.start()
    except MockConfigError as e:
        return _fail(f"mock-descope: {args.config or 'configuration'}: {e}", EXIT_USAGE)
    except OSError as e:
        return _fail(f"mock-descope: cannot listen on 127.0.0.1:{args.port}: {_bind_reason(e)}")
    try:
        _print_banner(mock)
        _wait_for_stop()
    finally:
        mock.stop()
    print("mock Descope stopped", flush=True)
    return EXIT_OK


def _bind_reason(error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return "the port is busy (another process listens on it); pick another with --port"
    return error.strerror or str(error)


def _print_banner(mock: Any) -> None:
    key = mock.config.default_access_key
    lines = [
        f"mock Descope on {mock.base_url}",
        f"  project id:  {mock.project_id}",
        f"  JWKS URL:    {mock.jwks_url}",
        f"  issuer:      {mock.issuer}",
        f"  active kid:  {mock.state.keyring.active.kid}",
        f"  access key:  {key.cleartext}  (key id {key.id})",
        f"  exchange:    curl -s -X POST -H 'Authorization: Bearer {mock.project_id}:{key.cleartext}' "
        f"{mock.base_url}/v1/auth/accesskey/exchange",
        f"  mint:        krakend-mitm token --base-url {mock.base_url} --roles admin",
        f"mock-descope ready on {mock.base_url} (Ctrl-C to stop)",
    ]
    print("\n".join(lines), flush=True)


def _wait_for_stop() -> None:
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):  # a timed wait keeps signal delivery prompt
            pass
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------------------------------------
# token


def add_token_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "token", help="mint a token at a running mock Descope, exchange an access key, or decode a token",
        description="Print one token (and nothing else), so $(krakend-mitm token …) fits in a curl command. "
                    "--base-url and --project default to $DESCOPE_BASE_URI and $DESCOPE_PROJECT_ID, then to "
                    f"{DEFAULT_BASE_URL} and {DEFAULT_PROJECT_ID}.")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--access-key", action="store_true", help="mint an access-key session token")
    kind.add_argument("--refresh", action="store_true", help="mint a refresh token (drn DSR)")
    kind.add_argument("--exchange", action="store_true",
                      help="exchange an access key (--key) at the base URL, mock or real Descope; prints sessionJwt")
    kind.add_argument("--decode", metavar="TOKEN", help="print the header and claims of TOKEN ('-': stdin) as JSON, "
                                                        "without verifying; needs no mock")
    parser.add_argument("--roles", type=_csv, help="project roles, comma-separated (permissions follow the mock's "
                                                   "role map)")
    parser.add_argument("--permissions", type=_csv, help="exact project permissions, comma-separated")
    parser.add_argument("--tenant", action="append", default=[], metavar="TENANT:ROLE,ROLE",
                        help="a tenant and its roles (repeatable)")
    parser.add_argument("--claim", action="append", default=[], metavar="KEY=VALUE",
                        help="a top-level claim; VALUE is JSON when it parses, else a string (repeatable). With "
                             "--exchange: loginOptions.customClaims (they land in nsec)")
    parser.add_argument("--lifetime", type=int, metavar="SECONDS", help="token lifetime (negative: already expired)")
    parser.add_argument("--issuer-form", choices=("bare", "url", "v1apps"), help="form of iss (descope.md §5)")
    parser.add_argument("--issuer", help="a literal iss value")
    parser.add_argument("--sub", help="subject: a user id, or an access-key id with --access-key")
    parser.add_argument("--selected-tenant", metavar="TENANT", help="current tenant (dct); with --exchange: "
                                                                     "loginOptions.selectedTenant")
    parser.add_argument("--sign-with", metavar="KID", help="active (default), unpublished, none, or a kid")
    parser.add_argument("--key", help="access-key cleartext for --exchange (default $DESCOPE_ACCESS_KEY, then the "
                                      "mock's default key)")
    parser.add_argument("--base-url", help="Descope or mock base URL")
    parser.add_argument("--project", help="Descope project id")
    parser.add_argument("--timeout", type=float, default=10.0, help="HTTP timeout in seconds (default 10)")
    parser.set_defaults(func=run_token)
    return parser


_MINT_ONLY = ("roles", "permissions", "tenant", "lifetime", "issuer_form", "issuer", "sub", "sign_with")


def run_token(args: argparse.Namespace) -> int:
    try:
        if args.decode is not None:
            print(json.dumps(_decoded(args.decode), indent=2, ensure_ascii=False))
        elif args.exchange:
            print(_exchanged(args))
        else:
            print(_minted(args))
    except CommandError as e:
        return _fail(f"token: {e}", e.code)
    except BrokenPipeError:  # `… | head`: the reader left; nothing more to say
        sys.stdout = open(os.devnull, "w")
        return EXIT_FAILED
    return EXIT_OK


def _decoded(text: str) -> dict[str, Any]:
    token = sys.stdin.read() if text == "-" else text
    try:
        return decode_unverified(token).as_dict()
    except TokenFormatError as e:
        raise CommandError(f"cannot decode: {e}") from None


def _base_url(args: argparse.Namespace) -> str:
    base = args.base_url or os.environ.get("DESCOPE_BASE_URI") or os.environ.get("DESCOPE_BASE_URL")
    return (base or DEFAULT_BASE_URL).rstrip("/")


def _project(args: argparse.Namespace) -> str:
    return args.project or os.environ.get("DESCOPE_PROJECT_ID") or DEFAULT_PROJECT_ID


def _minted(args: argparse.Namespace) -> str:
    request: dict[str, Any] = {"kind": "access_key" if args.access_key else "refresh" if args.refresh else "session",
                               "project_id": _project(args)}
    optional = {"sub": args.sub, "roles": args.roles, "permissions": args.permissions, "ttl": args.lifetime,
                "issuer_mode": args.issuer_form, "issuer": args.issuer, "selected_tenant": args.selected_tenant,
                "sign_with": args.sign_with}
    request.update({name: value for name, value in optional.items() if value is not None})
    if args.tenant:
        request["tenants"] = _tenants(args.tenant)
    if args.claim:
        request["claims"] = _claims(args.claim)
    base = _base_url(args)
    answer = _post(f"{base}/__mock/token", request, {}, args.timeout, base, minting=True)
    return answer["jwt"]


def _exchanged(args: argparse.Namespace) -> str:
    misplaced = [f"--{name.replace('_', '-')}" for name in _MINT_ONLY if getattr(args, name) not in (None, [])]
    if misplaced:
        raise CommandError(f"{', '.join(misplaced)} do(es) not apply to --exchange: an exchanged token carries the "
                           "access key's own roles and tenants", EXIT_USAGE)
    key = args.key or os.environ.get("DESCOPE_ACCESS_KEY") or _default_access_key()
    options: dict[str, Any] = {}
    if args.claim:
        options["customClaims"] = _claims(args.claim)
    if args.selected_tenant:
        options["selectedTenant"] = args.selected_tenant
    base = _base_url(args)
    headers = {"Authorization": f"Bearer {_project(args)}:{key}"}
    answer = _post(f"{base}/v1/auth/accesskey/exchange", {"loginOptions": options}, headers, args.timeout, base)
    if not isinstance(answer.get("sessionJwt"), str):
        raise CommandError(f"{base}: the exchange answer has no sessionJwt")
    return answer["sessionJwt"]


def _default_access_key() -> str:
    from krakend_mitm.descope.config import DEFAULT_ACCESS_KEY
    return DEFAULT_ACCESS_KEY


def _post(url: str, body: dict[str, Any], headers: dict[str, str], timeout: float, base: str,
          minting: bool = False) -> dict[str, Any]:
    import requests  # only the network commands need it

    what = "mock Descope" if minting else "Descope"
    try:
        response = requests.post(url, json=body, headers=headers, timeout=timeout)
    except requests.ConnectionError as e:
        hint = "; start one with `krakend-mitm mock-descope`" if minting else ""
        raise CommandError(f"{what} not reachable at {base} ({_connection_reason(e)}){hint}") from None
    except requests.Timeout:
        raise CommandError(f"{what} at {base} did not answer within {timeout:g}s") from None
    except requests.RequestException as e:
        raise CommandError(f"request to {url} failed: {e.__class__.__name__}") from None
    return _answer(response, url, base, minting)


def _connection_reason(error: Exception) -> str:
    text = str(error)
    for reason in ("Connection refused", "Name or service not known", "No route to host", "timed out",
                   "Temporary failure in name resolution", "nodename nor servname"):
        if reason in text:
            return reason.lower()
    return "connection failed"


def _answer(response: Any, url: str, base: str, minting: bool) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        document = None
    if response.status_code == 404 and minting:
        raise CommandError(f"{base} has no /__mock/token: is it a mock Descope? (a real Descope cannot mint; "
                           "use --exchange)")
    if response.status_code != 200:
        raise CommandError(f"{url} answered HTTP {response.status_code}{_error_text(document)}")
    if not isinstance(document, dict):
        raise CommandError(f"{url} answered HTTP 200 without a JSON object")
    return document


def _error_text(document: Any) -> str:
    if isinstance(document, dict) and "errorCode" in document:
        return f" {document.get('errorCode')}: {document.get('errorMessage') or document.get('errorDescription')}"
    return ""


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _tenants(values: list[str]) -> dict[str, list[str]]:
    tenants: dict[str, list[str]] = {}
    for value in values:
        tenant_id, _, roles = value.partition(":")
        if not tenant_id.strip():
            raise CommandError(f"--tenant {value!r}: expected TENANT:ROLE,ROLE", EXIT_USAGE)
        tenants[tenant_id.strip()] = _csv(roles)
    return tenants


def _claims(values: list[str]) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    for value in values:
        name, equals, text = value.partition("=")
        if not equals or not name.strip():
            raise CommandError(f"--claim {value!r}: expected KEY=VALUE", EXIT_USAGE)
        try:
            claims[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            claims[name.strip()] = text  # not JSON: a plain string
    return claims


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(message, file=sys.stderr)
    return code


# ---------------------------------------------------------------------------------------------
# standalone entry, until cli.py registers the subcommands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="krakend-mitm")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_mock_descope_parser(subparsers)
    add_token_parser(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

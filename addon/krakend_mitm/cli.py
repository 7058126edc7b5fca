"""`krakend-mitm`: run a krakend.json in mitmproxy, check it, or watch the demo.

  krakend-mitm run -c krakend.json [--web] [-d] [mitmproxy args…]
  krakend-mitm check -c krakend.json
  krakend-mitm demo [--port 8080] [--mock-port 4000] [--web] [--routing]
  krakend-mitm mock-descope [--port 4000] [--project P2…] [--config mock.yaml]
  krakend-mitm token [--roles a,b] [--tenant T1:r1] [--claim k=v] [--access-key] [--exchange] [--decode TOKEN]
"""

from __future__ import annotations

import argparse
import os
import sys

from krakend_mitm import config as config_mod
from krakend_mitm.errors import ConfigError, describe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="krakend-mitm", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="serve a KrakenD config through mitmdump (or mitmweb with --web)")
    run.add_argument("-c", "--config", default="krakend.json")
    run.add_argument("-d", "--debug", action="store_true", help="enable /__debug/ (krakend run -d)")
    run.add_argument("--web", action="store_true", help="use mitmweb instead of mitmdump")
    run.add_argument("-p", "--port", type=int, help="override the config's port")
    run.add_argument("mitm_args", nargs=argparse.REMAINDER, help="passed to mitmproxy (after --)")

    check = commands.add_parser("check", help="validate a config like `krakend check`")
    check.add_argument("-c", "--config", default="krakend.json")

    demo = commands.add_parser("demo", help="replay the Descope scenario offline (mock Descope + gateway)")
    demo.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    demo.add_argument("--mock-port", type=int, default=4000, help="mock Descope port (default 4000)")
    demo.add_argument("--web", action="store_true", help="use mitmweb and leave it running")
    demo.add_argument("--routing", action="store_true", help="show routing against an echo backend instead")

    from krakend_mitm.descope.commands import add_mock_descope_parser, add_token_parser
    add_mock_descope_parser(commands)
    add_token_parser(commands)

    args = parser.parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "check":
        return cmd_check(args.config)
    if args.command == "demo":
        from krakend_mitm import demo as demo_mod
        if args.routing:
            return demo_mod.run_routing_demo(port=args.port, web=args.web)
        return demo_mod.run_descope_demo(port=args.port, mock_port=args.mock_port, web=args.web)
    return args.func(args)


def cmd_check(path: str) -> int:
    problems = all_problems(path)
    if not problems:
        print("Syntax OK!")
        return 0
    for problem in problems:
        where = problem.path or "(document)"
        print(f"{path}: {where}: {problem.message}")
    print(f"{len(problems)} problem(s) found", file=sys.stderr)
    return 1


def all_problems(path: str) -> list[ConfigError]:
    """Load-time errors, then route-registration crashes and validator problems of a loadable config."""
    config, problems = config_mod.check(path)
    if config is None or problems:
        return problems
    from krakend_mitm.auth.stage import check_problems
    from krakend_mitm.pipeline import build_routes
    from krakend_mitm.router import RouteTable

    try:
        RouteTable(build_routes(config, debug=False)[0])
    except ConfigError as e:
        problems.append(e)
    problems += check_problems(config)
    return problems


def cmd_run(args: argparse.Namespace) -> int:
    from krakend_mitm.processes import gateway_command, mitmweb_warning

    try:
        config = config_mod.load(args.config)
    except ConfigError as e:
        print(f"ERROR parsing the configuration file: {describe(e, args.config)}", file=sys.stderr)
        return 1
    port = args.port or config.port
    extra = [a for a in args.mitm_args if a != "--"]
    command = gateway_command(args.config, port, listen_host=config.listen_ip, web=args.web,
                              debug=args.debug, extra=tuple(extra))
    if args.web and (warning := mitmweb_warning()):
        print(warning, file=sys.stderr)
    print(f"krakend-mitm: serving {args.config} on {config.listen_ip or '0.0.0.0'}:{port}", file=sys.stderr)
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

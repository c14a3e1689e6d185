"""``diazepam-cds token``: mint a test token (or print the JWK Set) for a local private key,
so an integration team can call a protected service and configure it to trust them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cds_service.cli import _EXTRA_PARSERS, command
from cds_service.security.tokens import DEFAULT_LIFETIME_S, TokenError, mint_token, public_jwks


def _add_token(sub: Any) -> None:
    p = sub.add_parser(
        "token",
        help="mint a CDS client JWT from a local private key (or print its public JWK Set)",
        description="Example: diazepam-cds token --key ehr.pem --iss https://ehr.example.org "
        "--aud https://cds.example.org/cds-services/diazepam-order-sign",
    )
    p.add_argument("--key", required=True, help="PEM private key (EC P-384 or RSA)")
    p.add_argument("--iss", help="issuer (the iss claim), as configured in the service")
    p.add_argument("--aud", help="the exact URL to be called")
    p.add_argument("--kid", help="key id (default: RFC 7638 thumbprint of the key)")
    p.add_argument("--alg", help="ES384 for P-384 keys, RS384 for RSA (default from the key)")
    p.add_argument("--tenant", help="tenant claim")
    p.add_argument("--jku", help="jku header (the issuer's JWK Set URL)")
    p.add_argument("--lifetime", type=int, default=DEFAULT_LIFETIME_S, help="seconds (300)")
    p.add_argument(
        "--print-jwks",
        action="store_true",
        help="print the public JWK Set for the key (what the service's issuer entry needs)",
    )


_EXTRA_PARSERS.append(_add_token)


@command("token")
def token(args: argparse.Namespace) -> int:
    try:
        if args.print_jwks:
            print(json.dumps(public_jwks(args.key, kid=args.kid, alg=args.alg), indent=2))
            return 0
        if not args.iss or not args.aud:
            print("diazepam-cds token: --iss and --aud are required", file=sys.stderr)
            return 2
        extra = {"tenant": args.tenant} if args.tenant else None
        print(
            mint_token(
                args.key,
                args.iss,
                args.aud,
                kid=args.kid,
                alg=args.alg,
                extra_claims=extra,
                lifetime_s=args.lifetime,
                headers={"jku": args.jku} if args.jku else None,
            )
        )
    except TokenError as exc:
        print(f"diazepam-cds token: {exc}", file=sys.stderr)
        return 2
    return 0

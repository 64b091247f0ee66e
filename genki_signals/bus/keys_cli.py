"""``genki keys new NAME``: make a CurveZMQ key pair for links between hosts."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_verb(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("keys", help="CurveZMQ key pairs for topologies across hosts")
    sub = p.add_subparsers(dest="keys_verb", metavar="ACTION", required=True)
    new = sub.add_parser("new", help="write NAME.key (public) and NAME.key_secret (mode 0600)")
    new.add_argument("name", help="key name, e.g. the host or user it belongs to")
    new.add_argument("--dir", type=Path, help="directory for the files (default: "
                                              "$GENKI_KEYS_DIR or ~/.config/genki/keys)")
    new.set_defaults(func=cmd_keys_new)


def cmd_keys_new(args: argparse.Namespace) -> int:
    from genki_signals.bus.security import load_public_key, new_keys

    public, secret = new_keys(args.name, args.dir)
    print(f"public key (share it; list it in a spec's access: or hosts: keys): {public}")
    print(f"secret key (mode 0600, keep it on this machine): {secret}")
    print(f"public key text: {load_public_key(public).decode()}")
    return 0

"""``vidrec schemas export``: one JSON Schema file per message type."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from schemas import json_schemas


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("schemas", help="message schemas")
    ssub = s.add_subparsers(dest="schemas_cmd", required=True)
    x = ssub.add_parser("export", help="write one JSON Schema file per message type")
    x.add_argument("dir")
    x.set_defaults(func=cmd_schemas_export)


def cmd_schemas_export(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
        print(out / f"{name}.schema.json")
    return 0

#!/usr/bin/env python3
"""Read and update docker/manifest.json for build.sh and deploy.sh (standard library only).

  update_manifest.py [--manifest PATH] get KEY FIELD          print a field (empty for null)
  update_manifest.py [--manifest PATH] ref KEY                image:tag
  update_manifest.py [--manifest PATH] pull-ref KEY           image@digest when pinned so, else image:tag
  update_manifest.py [--manifest PATH] set KEY [--image X] [--tag X] [--id X|null] [--digest X|null]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

FIELDS = ("image", "tag", "digest", "id")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=Path(__file__).resolve().parent / "manifest.json")
    sub = parser.add_subparsers(dest="cmd", required=True)
    get = sub.add_parser("get")
    get.add_argument("key")
    get.add_argument("field", choices=FIELDS)
    for name in ("ref", "pull-ref"):
        sub.add_parser(name).add_argument("key")
    put = sub.add_parser("set")
    put.add_argument("key")
    for name in FIELDS:
        put.add_argument(f"--{name}")
    args = parser.parse_args(argv)

    data = json.loads(args.manifest.read_text(encoding="utf-8"))
    if args.cmd != "set" and args.key not in data:
        print(f"update_manifest: {args.manifest} has no image {args.key!r}; expected one of "
              f"{', '.join(k for k in data if not k.startswith('_'))}", file=sys.stderr)
        return 1
    entry = data.setdefault(args.key, {})
    if args.cmd == "get":
        print(entry.get(args.field) or "")
    elif args.cmd == "ref":
        print(f"{entry['image']}:{entry['tag']}")
    elif args.cmd == "pull-ref":
        print(f"{entry['image']}@{entry['digest']}" if entry.get("digest") else f"{entry['image']}:{entry['tag']}")
    else:
        for name in FIELDS:
            value = getattr(args, name)
            if value is None:
                continue
            value = None if value in ("", "null") else value
            if name in ("digest", "id") and value is not None and not DIGEST.match(value):
                print(f"update_manifest: --{name}: expected sha256: and 64 hex digits, got {value!r}", file=sys.stderr)
                return 1
            entry[name] = value
        tmp = args.manifest.with_name(f".{args.manifest.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, args.manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

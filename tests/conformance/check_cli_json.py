#!/usr/bin/env python3
"""Checks the command line's `--json` output against its schema (docs/cli/*.schema.json,
JSON Schema 2020-12, with the maintained `jsonschema` package).

    check_cli_json.py SCHEMA.json OUTPUT

Every non-empty line of OUTPUT must be one JSON document valid under SCHEMA. Exits 0, or 1
naming the first line that is not and why.
"""

import json
import sys

from jsonschema import Draft202012Validator


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    with open(argv[2], encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line.strip()]
    if not lines:
        print("no output to check")
        return 1
    for n, line in enumerate(lines, 1):
        try:
            value = json.loads(line)
        except ValueError as e:
            print(f"line {n} is not JSON: {e}")
            return 1
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            print(f"line {n} does not match {argv[1]}: at {'/'.join(map(str, e.path)) or '(top)'}: {e.message}")
            return 1
    print(f"{len(lines)} line(s) match")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

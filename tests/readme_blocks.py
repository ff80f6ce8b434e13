"""Print a marked code block of the README, so that CI runs the commands users read.

A block is marked by an HTML comment on the line before its fence::

    <!-- ci: NAME -->
    ```sh
    ...
    ```

Usage: python3 tests/readme_blocks.py NAME [README]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_BLOCK = re.compile(r"^<!-- ci: (?P<name>[\w-]+) -->\n```[\w-]*\n(?P<body>.*?)^```$", re.M | re.S)


def blocks(text: str) -> dict[str, str]:
    """Every marked block of ``text``, by name."""
    found: dict[str, str] = {}
    for m in _BLOCK.finditer(text):
        if m["name"] in found:
            raise SystemExit(f"README: two blocks are marked {m['name']!r}")
        found[m["name"]] = m["body"]
    return found


def main(argv: list[str]) -> int:
    name = argv[1]
    readme = Path(argv[2]) if len(argv) > 2 else Path(__file__).resolve().parent.parent / "README.md"
    found = blocks(readme.read_text())
    if name not in found:
        print(f"README.md has no block marked '<!-- ci: {name} -->' (it has: {sorted(found)})", file=sys.stderr)
        return 2
    sys.stdout.write(found[name])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""How every ``samp`` sub-command reports bad input: exit 2 with one line naming the problem, not a traceback."""
from __future__ import annotations

import sys


def refusing_bad_input(command, name: str):
    """Wrap ``command(args) -> int`` so that a ValueError or FileNotFoundError prints ``name: message`` and exits 2."""
    def run(args) -> int:
        try:
            return command(args)
        except (ValueError, FileNotFoundError) as error:
            print(f"{name}: {error}", file=sys.stderr)
            return 2
    return run

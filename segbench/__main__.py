"""`python -m segbench`: the `segbench` command."""

import sys

from segbench.cli import main

if __name__ == "__main__":
    sys.exit(main())

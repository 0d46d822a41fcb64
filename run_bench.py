#!/usr/bin/env python
"""segbench from a checkout: `python run_bench.py ...` is the `segbench` command (see `segbench/cli.py`)."""

import sys

from segbench.cli import main

if __name__ == "__main__":
    sys.exit(main())

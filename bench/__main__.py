"""``python -m bench``: the same command line as ``bench``."""

import sys

from bench.cli import main

sys.exit(main(prog_name="bench"))

"""``python -m pdefm.cli``: the `pdefm` command (as torchrun and subprocesses call it)."""

import sys

from pdefm.cli import main

sys.exit(main())

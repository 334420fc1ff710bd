"""`python -m depth360.estimators.cli`: the command line (the Blender worker runs it so)."""

import sys

from . import console_main

sys.exit(console_main())

"""`python -m elmo_lm` is the `elmo` command."""

import sys

from .cli import main

sys.exit(main())

"""`python -m elmo_lm` is the `elmo` command."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while starting: no traceback
    sys.stderr.write("elmo: interrupted\n")
    sys.exit(130)

sys.exit(main())

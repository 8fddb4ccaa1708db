"""`python -m reference`: the same as the `b2b-agent` command."""

import sys

from reference.cli import main

sys.exit(main())

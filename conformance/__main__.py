"""`python -m conformance` = `b2b-conform`."""

import sys

from conformance.cli import main

sys.exit(main())

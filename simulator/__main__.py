"""``python -m simulator`` is ``b2b-sim``."""

from simulator.cli import main

raise SystemExit(main())

"""``python -m kontextd``."""

import sys

from kontextd.main import main

sys.exit(main())

"""``python -m jacspec`` is the ``jacspec`` command."""

import sys

from jacspec.cli import main

sys.exit(main())

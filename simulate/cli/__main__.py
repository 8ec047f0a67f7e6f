"""``python -m simulate.cli``: the ``simulate`` command."""

import sys

from .app import main

sys.exit(main())

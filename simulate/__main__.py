"""``python -m simulate``: the ``simulate`` command."""

import sys

from .cli.app import main

sys.exit(main())

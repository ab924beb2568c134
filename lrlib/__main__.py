"""``python -m lrlib``: see :mod:`lrlib.cli`."""

import sys

from .cli import main

sys.exit(main())

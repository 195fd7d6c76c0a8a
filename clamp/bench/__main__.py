"""``python -m clamp.bench``: see :mod:`clamp.bench`."""

import sys

from clamp.bench import main

sys.exit(main())

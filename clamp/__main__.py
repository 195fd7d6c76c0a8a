import sys

from clamp.cli import main

sys.exit(main())

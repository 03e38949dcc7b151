"""`python -m bench`: see `python -m bench --help`."""

import sys

from ._cli import main

sys.exit(main())

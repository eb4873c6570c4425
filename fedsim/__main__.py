"""``python -m fedsim``: the ``fedsim`` command of the interpreter that runs it."""

import sys

from fedsim.cli import main

sys.exit(main())

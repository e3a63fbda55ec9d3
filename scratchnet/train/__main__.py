"""``python -m scratchnet.train``: see :mod:`scratchnet.train.cli`."""

import sys

from scratchnet.train.cli import main

sys.exit(main())

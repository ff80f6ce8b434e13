"""``python -m ninep_server`` runs the ``ninep`` command line."""

import sys

from .cli import main

sys.exit(main())

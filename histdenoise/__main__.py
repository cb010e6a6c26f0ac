"""``python -m histdenoise`` runs the command line."""

import sys

from histdenoise.cli import main

sys.exit(main())

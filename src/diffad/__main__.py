"""``python -m diffad`` runs the command line."""

import sys

from diffad.cli import main

sys.exit(main())

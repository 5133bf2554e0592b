"""``python -m sparsekit`` runs the CLI."""

import sys

from sparsekit.cli.main import main

sys.exit(main())

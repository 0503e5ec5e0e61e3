"""`python -m blackbox_vae ...` runs the command line."""

import sys

from blackbox_vae.cli import main

sys.exit(main())

"""`python -m hgpose ...` (also what `torchrun -m hgpose train ...` runs)."""

import sys

from hgpose.cli import main

sys.exit(main())

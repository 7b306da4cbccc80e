"""`python -m geosid.cli`."""

import sys

from geosid.cli import main

sys.exit(main())

import sys

from quantpress.core.cli import main

sys.exit(main())

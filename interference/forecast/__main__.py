import sys

from interference.forecast.cli import main

sys.exit(main())

import sys

from synclora.cli import main

sys.exit(main())

from synclora import signals

signals.while_starting()  # a stop signal while the modules import ends the process at once, with one line

import sys  # noqa: E402

from synclora.cli import main  # noqa: E402

sys.exit(main())

"""Sync-LoRA app entry point (also a Hugging Face Space's `app.py`): build once, then launch.

The app is built at import time so models load once at start-up, as ZeroGPU asks; all logic is in synclora/ui.
Configuration: SYNCLORA_* environment variables (docs/CONFIG.md); `python app.py --help` for the rest.
"""

from synclora import signals

if __name__ == "__main__":  # a stop signal while the modules import ends the process at once, with one line
    signals.while_starting("starting the app")

import logging
import sys

from synclora.errors import SyncloraError
from synclora.ui.server import create_app, launch_from_cli

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
try:
    with signals.stop_cleanly():  # stopped while the models load: what start-up made is removed (`create_app`)
        demo = create_app()
except SyncloraError as exc:  # e.g. a SYNCLORA_* value that cannot be parsed: one sentence, not a traceback
    raise SystemExit(f"error: {exc}") from None
except BaseException as exc:
    stop = signals.stop_of(exc) or (signals.Terminated(signals.received()) if signals.received() else None)
    if not isinstance(stop, signals.Terminated):
        raise
    print(f"stopped by {signals.signal_name(stop.signum)} while starting the app; nothing was left behind",
          file=sys.stderr)
    raise SystemExit(stop.exit_code) from None

if __name__ == "__main__":
    launch_from_cli(demo)

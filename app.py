"""Sync-LoRA app entry point (also a Hugging Face Space's `app.py`): build once, then launch.

The app is built at import time so models load once at start-up, as ZeroGPU asks; all logic is in synclora/ui.
Configuration: SYNCLORA_* environment variables (docs/CONFIG.md); `python app.py --help` for the rest.
"""

import logging

from synclora.errors import SyncloraError
from synclora.ui.server import create_app, launch_from_cli

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
try:
    demo = create_app()
except SyncloraError as exc:  # e.g. a SYNCLORA_* value that cannot be parsed: one sentence, not a traceback
    raise SystemExit(f"error: {exc}") from None

if __name__ == "__main__":
    launch_from_cli(demo)

"""``python -m tekton_notifications.cli``: the same as ``tkn-notify``."""

from tekton_notifications.cli import main

main()

"""``python -m tekton_notifications.devtools.kubeapi``: serve the emulator (see ``server.main``)."""

from tekton_notifications.devtools.kubeapi.server import main

raise SystemExit(main())

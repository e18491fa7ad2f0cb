"""Developer tools: local emulators and demos for tekton-notifications."""

"""Pure functions that turn a custom resource (a dict) and the settings into child manifests."""

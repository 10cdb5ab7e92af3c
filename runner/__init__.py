"""The shared runtime of tombola's functions: settings, manifests, backends and the runners."""

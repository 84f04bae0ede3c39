"""One reconcile driver for every kind, and the supervisor that runs one loop per live object."""

"""Our own registry (`dockyard registry`): the distribution API's handlers (`handlers`), its storage
on disk (`storage`, `referrers`), garbage collection (`gc`) and the command (`main`). It knows
nothing of the registry client or the daemon's distribution service."""

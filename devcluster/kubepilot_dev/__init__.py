"""``kubepilot dev``: the whole local stack in one command (devcluster, CRDs, operator, node agent,
gateway), its state kept in one data folder so a second run picks up where the first stopped."""

"""Status derivation (pure) and the status patch (the diff, written in one place)."""

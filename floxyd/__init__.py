"""floxyd: the floxy worker daemon."""

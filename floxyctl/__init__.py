"""floxyctl: the command line of floxy."""

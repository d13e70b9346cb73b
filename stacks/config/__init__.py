"""An environment file as a validated `Environment`: schema, loader, cross-field checks, names.

No cdktf and no Ray: bad input is refused in well under a second.
"""

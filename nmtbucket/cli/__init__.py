"""The command-line programs, the only code that sees Hydra: ``nmtbucket-train`` (:mod:`.train`)
and ``nmtbucket-translate`` (:mod:`.translate`)."""

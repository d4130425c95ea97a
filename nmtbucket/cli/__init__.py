"""The command-line programs, the only code that sees Hydra: ``nmtbucket-train`` (:mod:`.train`)
and ``nmtbucket-translate`` (:mod:`.translate`); and :func:`.tasks.run_training`, the dispatch
on ``data.task`` that the training CLI and the Python API share."""

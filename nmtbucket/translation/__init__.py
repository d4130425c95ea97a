"""Translation: its training task, step and held-out evaluator, sacreBLEU scores, the run folder
read back, and the :class:`~nmtbucket.translation.translator.Translator` API."""

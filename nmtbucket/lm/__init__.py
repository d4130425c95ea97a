"""Language modelling: its training task, its step (carried recurrent state) and its perplexity
evaluator."""

"""The training engine both tasks share: the Trainer (handed its batches, step, optimizer,
schedule, update and evaluator), the step protocol, optimizer and losses, checkpoints, metrics,
the run directory, the evaluation loop and the pipeline skeleton."""

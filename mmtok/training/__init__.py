"""Training components: optimizer, schedule, checkpoint, parallelism, metrics, loop."""

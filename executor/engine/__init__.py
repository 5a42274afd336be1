"""The build engine: plan, schedule and execute steps."""

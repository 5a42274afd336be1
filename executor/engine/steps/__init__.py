"""executor.engine.steps"""

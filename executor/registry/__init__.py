"""executor.registry"""

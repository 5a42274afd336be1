"""executor.dockerfile"""

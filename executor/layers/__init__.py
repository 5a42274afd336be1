"""executor.layers"""

"""executor.build"""

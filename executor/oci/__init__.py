"""executor.oci"""

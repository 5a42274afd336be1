"""executor.build.commands"""

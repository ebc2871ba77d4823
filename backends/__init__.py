"""Executor backends, one module or package each; found through ``core.engine.registry``."""

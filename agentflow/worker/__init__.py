"""The worker agent: connection to the masters, executors, resources and limits.

Kept free of imports: every python pool process imports this package first.
"""

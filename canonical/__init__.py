"""The shared kernel: canonical model, money, identifiers, time and the error tree.

It imports nothing else from the project; every layer speaks it.
"""

"""`vaezoo bench`: the whole zoo trained and measured on one protocol, written up as one table.

protocol.py says what is run (data, budget, seeds, K); runner.py runs it cell by cell, resumably;
report.py turns the finished cells into docs/results.md; published.py holds the numbers the
literature reports for the same protocol, to print beside ours.
"""

"""One module per server; base.py is the contract.  Each imports its server library lazily."""

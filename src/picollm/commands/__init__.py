"""One module per stage command (`picollm <stage>`): read the job's `--config` slice and paths, run the
stage, write the outputs and a provenance record. cli.py imports only the command it runs, so a job's code
identity (picollm.codehash) is its own command module and what that imports.
"""

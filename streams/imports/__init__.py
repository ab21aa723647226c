"""Other people's data into vidrec event logs: ``vidrec import`` and ``vidrec data fetch``."""

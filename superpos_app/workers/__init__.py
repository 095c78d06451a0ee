"""Work off the GUI thread: the one ``Worker`` mechanism (worker.py), the job controller for long engine
jobs (jobs.py), and the one "latest request wins" runner for short analyses (latest_runner.py)."""

"""ExtractionCronJob: ExtractionJobs on a cron schedule (schedule.py decides, runs.py builds the
runs and reads them back, schedule_check.py carries the decision out)."""

"""Celery app and tasks that run ml/ jobs and persist their results to the database."""

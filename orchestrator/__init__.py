"""The interviewer: runs interview sessions, stores answers, asks the scorer to grade them."""

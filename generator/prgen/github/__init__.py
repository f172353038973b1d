"""The only code that talks to GitHub (PyGithub): client, errors, pull requests, report channels."""

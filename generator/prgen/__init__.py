"""prgen: one preview environment per open pull request, the GitOps way."""

__version__ = "0.1.0"

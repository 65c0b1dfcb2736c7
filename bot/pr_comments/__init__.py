"""The pull request as a surface: commands typed as PR comments, answered on the PR (a delivery path,
like bot/slack and bot/terminal). See surface.py."""

"""The domain: one module per command, the report model, redaction, evidence. Never imports Slack."""

"""Alert channels: email (SMTP), Slack (incoming webhook), PagerDuty (Events API v2)."""

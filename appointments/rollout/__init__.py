"""The guarded rollout autopilot: a plan, the evidence its guards read, one pass's
decisions, and the audit trail of every stage change, hold and release."""

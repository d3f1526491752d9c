"""The credential broker: git smart HTTP and forge API gates, their policies, and the audit log."""

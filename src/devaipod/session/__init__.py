"""Sessions: plan, apply and track an agent's containers, volumes and state."""

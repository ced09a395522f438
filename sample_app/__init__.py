"""The sample application that fleetops.rollback deploys, breaks and rolls back."""

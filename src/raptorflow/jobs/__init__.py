"""Background jobs of organizations: enqueue, inspect, cancel (see raptorflow.kit.jobs for the contract)."""

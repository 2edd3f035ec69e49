"""AWS adapters: DynamoDB state, Step Functions dispatch, EventBridge schedules and events."""

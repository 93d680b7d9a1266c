"""Airflow settings every deployment of yieldops runs with: docker-compose.yaml sets the
same (checked by tests/unit/test_compose.py), and the local production stack of the checkout
(tests/stack/production.py, ``scripts/stack-local``) starts its components with them."""

from __future__ import annotations

# A lost worker's tasks run again within about 5.5 minutes (README, "Lost workers"). One
# it was running fails once its heartbeat has been missing for 300 s, then is retried. One
# it had taken from the broker but not started stays queued: the message is unacknowledged
# and Redis redelivers it only after Airflow's visibility timeout (24 h), so the scheduler
# queues it again after 300 s queued. Parallelism equals the workers' task slots, so no
# task waits that long for a free slot (each deployment sets that from its own workers).
LOST_WORKER_SETTINGS = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "300",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "10",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "30",
}

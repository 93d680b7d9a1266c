"""The local demo stack (``yieldops demo``): Airflow standalone, an MLflow server, the
prediction gateway and a traffic replayer on loopback, fed with synthetic lots, followed
through Airflow's REST API until a champion serves. No Airflow import here: the stack
is driven as a user would drive it, through processes and HTTP."""

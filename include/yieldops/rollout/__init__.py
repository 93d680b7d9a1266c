"""Rollout of a challenger (no Airflow here): the run itself, plan to promotion or rollback
(``flow``); strategies as steps and a run's plan (``plan``), deployment targets
(``targets``), the gateway admin client (``gateway``), a step's prediction-log window and
its statistical judgement (``window``, ``analysis``) by thresholds declared once
(``thresholds``), the offline check on a target's data (``offline``), the audit log
(``audit``), the model version a rollout names checked against the registry
(``versions``) and the Rollouts page (``overview``).

Import the submodules: the package itself stays light so DAG files can use ``plan``
and ``targets`` at parse time without numpy or scipy.
"""

"""Intake: what every service that accepts or checks requests shares, so the gateway,
store and scheduler are applications over ``conveyor`` and never import each other.

- ``validation``: submit requests (``inputs`` checks each input type; ``unknown`` finds
  fields a message does not declare; ``checks`` holds the rules shared by all requests);
- ``reads``: get, list, stats and purge requests (served by the store);
- ``control``: schedule and queue control requests;
- ``catalog``: the task type registry as a submit sees it;
- ``admission``: the queue limits a submit is checked against (backpressure);
- ``submit``: ``Submitter``, which turns validated requests into queued tasks (the
  gateway's submits, the scheduler's ticks).
"""

"""The service's HTTP routes, one router per concern: ``health`` (probes and metrics, no auth),
``targets``, ``builds`` (submit, list, status, logs, cancel) and ``artifacts``. Every route gets
the :class:`~sparsekit.service.state.ServiceState` and the caller through dependencies
(``deps``)."""

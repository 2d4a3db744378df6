"""Socket I/O on one selectors loop: the loop and its timers, stream connections, listeners,
admission, deadlines, TLS and refusals.

Knows neither the server nor the application: what it needs of them is passed in
(:class:`~wsdaemon.net.stream.StreamHost`, callbacks, factories).
"""

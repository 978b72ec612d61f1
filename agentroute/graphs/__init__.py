"""Ready agent graphs shipped with agentroute (also loadable as ``graphs/<name>.py:graph``)."""

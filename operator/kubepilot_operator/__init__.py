"""kubepilot's operator: kopf handlers that reconcile the four kinds into Jobs, Deployments and Services."""

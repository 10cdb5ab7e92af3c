"""tombola's API gateway: the page, the public routes, the control plane and the replicas behind them."""

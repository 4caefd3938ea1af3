"""HTTP routers, one per resource; :func:`gateway.app.create_app` includes them."""

"""The JSON API's routes, one module per resource; api/http.py assembles them into the app."""

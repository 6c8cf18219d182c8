"""The app's triggers, grouped by concern; function_app.py registers them."""

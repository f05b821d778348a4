"""The marketers\x27 console, served by the app at /console."""

"""Worker processes for the application's task functions: dispatch, the worker link, supervision."""

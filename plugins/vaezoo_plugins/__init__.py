"""vaezoo's built-in plugins, registered through the `vaezoo` entry-point group like any other."""

"""Built-in plugins, registered through the usm_bridge entry point group like any other."""

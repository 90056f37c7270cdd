"""Server-rendered portal pages, one module per topic. Views parse and authorize; the
services and selectors of the apps do the work."""

"""calyx-ui: the reachability matrix and the live denied flows, as a web page."""

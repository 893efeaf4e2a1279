"""calyx-bgp: the BGP daemon (ExaBGP speaks, this package decides)."""

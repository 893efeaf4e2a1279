"""The pure nftables compiler: declared policy plus this node's endpoints in, one `inet calyx` ruleset out."""

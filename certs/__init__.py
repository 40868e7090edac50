"""Device identity (lFDI/sFDI) and the development PKI for IEEE 2030.5 / CSIP-AUS clients."""

"""Who is calling and how we prove who we are: TLS, certificates, PKI, acting-for assertions."""

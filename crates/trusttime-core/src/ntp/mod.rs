//! NTPv4 / SNTPv4 (RFC 5905, RFC 4330): the packet codec and the per-source client.

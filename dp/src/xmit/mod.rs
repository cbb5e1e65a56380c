//! Forwarding methods: NAT, DR, TUN.

//! A small blocking FastCGI client: enough to ping FPM pools and read their status pages.

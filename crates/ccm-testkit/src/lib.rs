//! Test support: real registries, PostgreSQL, runc and browsers started on 127.0.0.1 for ccm's tests.

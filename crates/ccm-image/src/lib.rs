//! OCI pull and push, layer application, the enclave manifest, conversion and runc bundles.

//! The in-image launcher: verifies the enclave image, attests, obtains its certificate and starts the app.

fn main() {}

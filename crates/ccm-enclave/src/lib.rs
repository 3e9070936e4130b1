//! The enclave manifest, its canonical encoding, and the synthesized enclave layout whose measurement is MRENCLAVE.

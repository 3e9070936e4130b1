//! SGX and DCAP byte structures, MRENCLAVE measurement and SIGSTRUCT signing. No I/O.

//! DCAP quote verification with collateral and policy, and the simulated SGX platform.

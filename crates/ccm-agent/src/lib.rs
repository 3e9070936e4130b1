//! The ccm node agent: enrollment, the local node-agent API and the manager link.
